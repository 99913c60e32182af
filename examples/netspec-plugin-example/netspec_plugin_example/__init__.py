"""An example netspec plug-in package: the layer kinds are in layers.py, their torch modules in modules.py."""
