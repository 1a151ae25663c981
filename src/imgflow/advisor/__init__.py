"""Advice on running a pipeline: which execution model, how many workers.

The advisor reads a profile of a team's images (or a built-in estimate),
applies queueing theory and a simulated day of arrivals, and explains each
step of its choice with the number behind it.
"""
