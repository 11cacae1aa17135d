"""wuxing's HTTP apps: one sub-package, ``wuxing``, served as ``/wuxing/<handler>``."""
