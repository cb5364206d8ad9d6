"""Stand-in for IsaacLab's ``isaaclab_rl`` package (see ../README.md)."""
