"""Type stub for hostprof.native._pprofscan."""

from typing import List
from typing import Optional
from typing import Tuple

import numpy as np
import numpy.typing as npt

MAX_DEPTH: int

class PprofError(ValueError): ...
class PprofUnsupported(ValueError): ...
class PprofTooLarge(ValueError): ...

class PprofScan:
    frames: npt.NDArray[np.uint32]
    offsets: npt.NDArray[np.int64]
    values: npt.NDArray[np.int64]
    label_off: Optional[npt.NDArray[np.int64]]
    labels: Optional[npt.NDArray[np.int64]]
    any_negative: bool
    type_nonzero: List[bool]
    names: List[str]
    types: List[Tuple[str, str]]
    period_type: Optional[Tuple[str, str]]
    period: int
    time_nanos: int
    def __len__(self) -> int: ...
    def string(self, i: int) -> str: ...

def scan(data: bytes) -> PprofScan: ...
