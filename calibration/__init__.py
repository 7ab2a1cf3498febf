"""Calibration: real data to (differentially private) targets with a ledger, federation of
targets, fitting the simulator to them, and the derivation of the embedded default profile."""
