"""Stand-in for IsaacLab's ``isaaclab`` package (see ../README.md)."""
