"""Scene text (Table 3): the RealCE recognition protocol (protocol), recognizers, scoring (evaluate), samples."""
