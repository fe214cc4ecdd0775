"""``super_resolve_folder``: a pipeline over a folder of images, ``batch_size`` images per call, reading and writing
in threads; one image's error is logged and listed, the run goes on."""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from ..errors import InputError, TVTError
from ..io import image_to_tensor, is_image_file, list_images, output_folder, save_image
from .base import _SRPipeline
from .resize import check_upscale

logger = logging.getLogger(__name__)

MAX_IO_THREADS = 8  # reading/writing threads of a batched run (at most the CPU count)


@dataclass
class FolderResult:
    """What ``super_resolve_folder`` did: the output ``folder``, the images ``written`` there, the inputs
    ``skipped`` (output exists) and ``failed`` (input, one-line reason); ``seconds``: time on written images."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def super_resolve_folder(pipe: _SRPipeline, inputs: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                         upscale: float = 4, overwrite: bool = False, seed: int = 0, progress: bool = True,
                         batch_size: int = 1, allow_empty: bool = False, **call_kwargs) -> FolderResult:
    """Super-resolve every input image into ``out_dir/<input stem>.png`` (written atomically) with ``pipe``.

    pipe: a TVTPipeline or BicubicPipeline (``TVTPipeline.from_pretrained``).
    inputs: an image file, a folder (non-recursive; other files are skipped with a warning), a glob, or a list
        of image paths.
    out_dir: created when absent, and removed again when nothing was written there; an existing file there is an
        InputError, and so is the folder of an input (outputs would replace or mix with the inputs).
    allow_empty: inputs without any image give an empty result; by default they are an InputError.
    upscale: 1 to 4. overwrite: replace existing outputs (else they are skipped and counted).
    seed: every image's VAE posterior sample is drawn from a generator seeded with it, so an image gives the
        same output whatever else is in the folder (seed 0 = the pipeline's default).
    progress: a tqdm bar. call_kwargs: passed to ``pipe(...)``: prompt, tile_size, tile_overlap, vae_tile_size,
        color_fix.
    batch_size: > 1 runs consecutive images of one size together, up to that many per call (the same outputs up
        to float rounding), reading the next images and writing the last ones in threads meanwhile.
    Errors of one image (unreadable, too small, non-finite output, an output name used twice) are logged and
    listed in ``failed``; the run goes on. Returns a FolderResult.
    """
    check_upscale(upscale)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} is a file: give a folder for the results")
    files = _image_inputs(inputs)
    if not files and not allow_empty:
        raise InputError(f"no images found in {inputs} (allow_empty=true accepts that)")
    _refuse_input_folder(out_dir, files)
    with output_folder(out_dir):  # removed again when nothing is written there
        return _super_resolve(pipe, files, FolderResult(out_dir), upscale, overwrite, seed, progress, batch_size,
                              call_kwargs)


def _refuse_input_folder(out_dir: Path, files: list[Path]) -> None:
    held = [p.name for p in files if p.resolve().parent == out_dir.resolve()]
    if held:
        raise InputError(f"output folder {out_dir} holds the input(s) {', '.join(held[:3])}"
                         f"{' ...' if len(held) > 3 else ''}: the outputs would replace or mix with them; give another")


def _super_resolve(pipe, files: list[Path], result: FolderResult, upscale: float, overwrite: bool, seed: int,
                   progress: bool, batch_size: int, call_kwargs: dict) -> FolderResult:
    out_dir = result.folder
    claimed: dict[Path, Path] = {}
    todo: list[tuple[Path, Path]] = []  # (input, output) to run
    for path in files:
        target = out_dir / f"{path.stem}.png"
        if target in claimed:
            _failed(result, path, f"output name {target.name} already used by {claimed[target].name}; rename one")
            continue
        claimed[target] = path
        if target.exists() and not overwrite:
            logger.warning("%s exists, skipping (overwrite to replace it)", target)
            result.skipped.append(path)
            continue
        todo.append((path, target))
    bar = tqdm(total=len(todo), desc="super-resolve", unit="img", disable=not progress)
    with bar:
        if batch_size > 1:
            _run_batches(pipe, todo, result, bar, batch_size, dict(upscale=upscale, **call_kwargs), seed)
            return result
        for path, target in todo:
            try:
                t0 = time.perf_counter()
                sr = pipe(path, upscale=upscale, generator=torch.Generator().manual_seed(seed), **call_kwargs).images[0]
                save_image(sr, target)
                result.seconds += time.perf_counter() - t0
                result.written.append(target)
            except IMAGE_ERRORS as err:
                _failed(result, path, err)
            bar.update()
    return result


IMAGE_ERRORS = (TVTError, FloatingPointError, OSError, ValueError)  # errors of one image: logged, the run goes on


def _failed(result: FolderResult, path: Path, err: Exception | str) -> None:
    result.failed.append((path, str(err).splitlines()[0]))
    logger.error("%s: %s", path.name, result.failed[-1][1])


def _run_batches(pipe, todo: list[tuple[Path, Path]], result: FolderResult, bar, batch_size: int, call_kwargs: dict,
                 seed: int) -> None:
    """``super_resolve_folder``'s batch_size > 1: chunks of ``batch_size`` inputs, read ahead and written behind in
    threads (PIL releases the GIL while decoding and encoding), each chunk run in groups of one image size."""
    t0 = time.perf_counter()
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=min(MAX_IO_THREADS, os.cpu_count() or 1)) as pool:
        def read(chunk):
            return [(path, target, pool.submit(image_to_tensor, path)) for path, target in chunk]

        def finish(saves):  # wait for the writes of a chunk
            for path, target, future in saves:
                try:
                    future.result()
                    result.written.append(target)
                except IMAGE_ERRORS as err:
                    _failed(result, path, err)
                bar.update()

        reads, saves = read(chunks[0]) if chunks else [], []
        for i in range(len(chunks)):
            loaded, reads = reads, read(chunks[i + 1]) if i + 1 < len(chunks) else []
            images = []
            for path, target, future in loaded:
                try:
                    images.append((path, target, future.result()))
                except IMAGE_ERRORS as err:
                    _failed(result, path, err)
                    bar.update()
            done = []
            for size in dict.fromkeys(tuple(t.shape) for _, _, t in images):
                done += _restore_group(pipe, [im for im in images if tuple(im[2].shape) == size], result, bar,
                                       call_kwargs, seed)
            finish(saves)
            saves = [(path, target, pool.submit(save_image, sr, target)) for path, target, sr in done]
        finish(saves)
    result.seconds += time.perf_counter() - t0


def _restore_group(pipe, group: list, result: FolderResult, bar, call_kwargs: dict, seed: int) -> list:
    """[(input, output, (3, h, w))] of one size -> [(input, output, sr (3, H, W))]; on an error, one by one, so it
    fails only the image it comes from."""
    generators = [torch.Generator().manual_seed(seed) for _ in group]  # per image: as when run alone
    try:
        out = pipe(torch.stack([t for _, _, t in group]), generator=generators, output_type="pt", **call_kwargs).images
        return [(path, target, sr) for (path, target, _), sr in zip(group, out)]
    except IMAGE_ERRORS as err:
        if len(group) == 1:
            _failed(result, group[0][0], err)
            bar.update()
            return []
    return [done for item in group for done in _restore_group(pipe, [item], result, bar, call_kwargs, seed)]


def _image_inputs(inputs) -> list[Path]:
    """Image files of ``inputs`` (see ``super_resolve_folder``); non-image files are skipped with a warning."""
    if not isinstance(inputs, (str, Path)):
        return [Path(p) for p in inputs]
    files, source = list_images(inputs), Path(inputs)
    others = sorted(p.name for p in source.iterdir() if p.is_file() and not is_image_file(p)) if source.is_dir() else []
    if source.is_file() and not is_image_file(source):
        others, files = [source.name], []
    if others:
        logger.warning("skipping %d non-image file(s): %s", len(others), ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    return files
