"""Type stub for hostprof.native._bpfmaps."""

from typing import List
from typing import Optional
from typing import Tuple

import numpy as np
import numpy.typing as npt

Vma = Tuple[int, int, int, int, int, int, int, str, Optional[str]]

def read_stacks(fd: int, ids: npt.ArrayLike, max_depth: int) -> Tuple[np.ndarray, np.ndarray]: ...
def delete_ids(fd: int, ids: npt.ArrayLike) -> int: ...
def read_u64_array(fd: int, n: int) -> np.ndarray: ...
def procmap_find(
    maps_fd: int, addrs: npt.ArrayLike
) -> Tuple[np.ndarray, List[Vma], np.ndarray]: ...
