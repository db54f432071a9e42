"""Models: data loading and cleaning, features, towers, baselines, training, evaluation.

Never imports ``stream`` (the serving side) so the trainer's pieces stay usable
offline; ``stream`` imports from here.
"""
