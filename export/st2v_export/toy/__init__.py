"""Toy world: procedurally rendered shape videos with captions, and a checker that measures them.

`world` renders seeded clips (a pure function of a scene spec, or of seed and index) with captions
from a small grammar and a held-out split; `checker` finds the shapes again by colour
segmentation and reports caption adherence, identity drift and motion continuity at chunk seams,
so videos generated from toy-world prompts can be judged by a program. See README.md.
"""
