"""monet: explainable, procedural photo retouching (MonetGPT) for the command line.

The library is usable without the CLI::

    from monet_cli import read_image, render_image, write_image
    img = read_image("photo.tif")
    out = render_image(img, {"Exposure": 20, "Temperature": -10})
    write_image("photo.monet.tif", out)

Heavy machine-learning packages are imported only by the model backends.
"""

__version__ = "0.1.0"

_LAZY = {
    "read_image": "monet_cli.images",
    "write_image": "monet_cli.images",
    "Image": "monet_cli.images",
    "render_image": "monet_cli.render",
    "render_linear": "monet_cli.render",
    "catalog": "monet_cli.catalog",
    "MonetError": "monet_cli.errors",
}


def __getattr__(name: str):
    # Lazy so that `import monet_cli` (and `monet --help`) stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'monet_cli' has no attribute {name!r}")
