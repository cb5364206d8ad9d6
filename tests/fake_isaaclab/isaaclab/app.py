"""``AppLauncher`` with IsaacLab's keywords; it records each launch instead of starting Isaac Sim."""

LAUNCHES: list[dict] = []


class AppLauncher:
    def __init__(self, launcher_args=None, **kwargs):
        LAUNCHES.append(dict(kwargs))
