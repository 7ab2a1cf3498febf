"""Readers of real telecom data sets (one per kind of input), shared by calibration and evaluation."""
