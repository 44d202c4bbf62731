"""``python -m onnxkit.cli``: the command line, with the signal handling of :func:`main`."""

from onnxkit.cli import main

main()
