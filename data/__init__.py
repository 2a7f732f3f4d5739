"""Bundled data shipped with kdanalysis (importable as ``kdanalysis._bundled``): the paper's results, the models table and example grids."""
