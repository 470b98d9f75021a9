"""Synthetic swipers: the generator's users, its statistics beside real swipes, and the
centralized training/evaluation runs built on them (the reference a federation is compared with).
"""
