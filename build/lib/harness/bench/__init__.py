"""`python -m harness bench`: the A/B epoch timings of scratch against distillation, the precision
comparison and the whole-study part (which runs the story, so `bench` sits above `study`).

Imports everything but the command line.
"""
