"""Image and tag features."""

from typing import Final

#: Photos per encoder forward pass. At 16 the default encoder's steady rate on 2 cores
#: equals that at 32 (within 3%), while ONNX Runtime's first passes (they grow its
#: memory arena and plan its memory pattern) cost half the time and its peak memory is
#: about 0.8 GB instead of 1.6 GB (docs/benchmarks.md, "`phototag annotate` end to end").
ENCODER_BATCH_SIZE: Final = 16

#: Photos per forward pass when annotating large photos (`stream.default_batch_size`).
LARGE_PHOTO_BATCH_SIZE: Final = 4
