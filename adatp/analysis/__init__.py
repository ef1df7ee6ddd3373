"""Measured attention bias and pictures of what each pruning method keeps (``adatp analyze``).

``bias`` holds the pure indices and colour classes over (T, h, w) maps, ``attention`` the
side-effect-free capture on a loaded model, ``plots`` the matplotlib drawing (the ``analysis``
extra, imported lazily), ``run`` the commands as functions that write PNG + JSON.
Nothing here is imported by ``adatp`` itself.
"""
