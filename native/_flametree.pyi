"""Type stub for hostprof.native._flametree."""

from typing import Tuple

import numpy as np
import numpy.typing as npt

class FlameTree:
    def __init__(self, sides: int = ...) -> None: ...
    def __len__(self) -> int: ...
    def add(
        self,
        frames: npt.ArrayLike,
        offsets: npt.ArrayLike,
        ids: npt.ArrayLike,
        values: npt.ArrayLike,
        side: int,
        unknown_name: int,
    ) -> None: ...
    def arrays(
        self,
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def layout(
        self, name_rank: npt.ArrayLike, other_name: int, root_name: int, max_nodes: int
    ) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]: ...
