"""Tables and pictures read back from the stores: the search table, the confirmed table, the
champion's exports, the Pareto front and the other plots.

Imports every concept below it; nothing but the story and the command line imports it.
"""
