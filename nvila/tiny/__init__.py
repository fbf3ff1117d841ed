"""The tiny NVILA shipped with the package (nvila.TINY_MODEL) and what made it: the
procedural coloured-shapes task (shapes), its training (train: `python -m
nvila.tiny.train`), evaluation (eval: `python -m nvila.tiny.eval`) and the demo
(`python -m nvila.tiny.demo`, `make demo`). The checkpoint and the sample images and
video are in assets/. Nothing in the model package imports this subpackage."""
