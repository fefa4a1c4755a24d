"""Stage 1 of METHOD.md: dense fine-tuning (the teacher).

``stage`` (the rule's job), ``results`` (its table and training curves).
"""
