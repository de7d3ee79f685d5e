"""The emulators as tests start them (the implementation lives in emulators.process, shared with the demo)."""

from emulators.process import RunningEmulators, start_emulators

__all__ = ["RunningEmulators", "start_emulators"]
