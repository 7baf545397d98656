"""Parameters of format version 1 of the rans bitstream.

These values are part of the format (``docs/FORMAT.md``, section "Coder
parameters"); changing any of them changes every file.
"""

PROB_BITS = 12
"""Probability precision: frequencies of a table sum to ``M = 2**PROB_BITS``."""

M = 1 << PROB_BITS

STATE_LOW = 1 << 16
"""``L``: lower bound of a normalized 32-bit state; every chunk starts and ends here."""

WORD_BITS = 16
"""Renormalization words are 16 bits; a symbol reads or writes at most one."""

LANES = 32
"""Most interleaved rANS states per chunk (one warp on a GPU); a plane may use fewer."""

RUN = 4
"""``V``: consecutive symbols of a chunk that belong to one lane in one step."""

GROUP = LANES * RUN
"""Chunk sizes are multiples of this (128 symbols)."""

LANE_COUNTS = (1, 2, 4, 8, 16, 32)
"""Lane counts a coded plane may have."""

LANE_SYMBOLS = 4096
"""Writers give a plane one lane per this many symbols (a power of two, 1 to 32 lanes); ``docs/FORMAT.md``,
section 10, says why 4096 and not 1024."""

DEFAULT_CHUNK = 1 << 15
"""Chunk size writers use unless told otherwise (32 Ki symbols)."""

MAX_CHUNK = 1 << 22
"""Largest chunk size a reader accepts."""

STATE_LOW_BITS = 16

ENCODE_SHIFT = STATE_LOW_BITS - PROB_BITS + WORD_BITS
"""The encoder emits a word before coding ``s`` when ``x >= freq(s) << ENCODE_SHIFT`` (20)."""
