"""The scenarios shipped with epoll-lab, installed as the package ``lab.scenarios``.

This file only makes the folder a package, so ``importlib.resources`` finds the TOML files
beside it in every kind of install (wheel, editable, the image); see README.md here for
what the scenarios do and how to write one.
"""
