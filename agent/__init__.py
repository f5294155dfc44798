"""hostprof: host-resident profiling agent for Linux. This module only re-exports the model."""

from hostprof.model import Frame
from hostprof.model import FrameKind
from hostprof.model import Profile
from hostprof.model import SampleType
from hostprof.model import Window

__all__ = ["Frame", "FrameKind", "Profile", "SampleType", "Window"]
