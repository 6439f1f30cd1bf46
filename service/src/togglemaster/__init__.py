"""ToggleMaster feature-flag service."""
from togglemaster.version import BUILD_ID, VERSION

__all__ = ["BUILD_ID", "VERSION"]
