"""Bundled data shipped with kdanalysis, importable as ``kdanalysis._bundled``.

Holds the paper's results in the contract, the models table and example grids.
"""
