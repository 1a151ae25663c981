"""Advice on running a pipeline: which execution model, how many workers.

`profile` scans a sample of a team's images and times each stage.
`compare` runs the sample under each model and measures it. `recommend`
applies queueing theory and a simulated day of arrivals to a profile (or
a built-in estimate), and explains each step of its choice with the
number behind it.
"""
