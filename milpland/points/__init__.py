"""Stage 4, points: what a given weight vector is (DESIGN §5-§8).

`certify.certify_point`: local minimum, saddle or neither, and its gap to the global
minimum; with the escape-neuron test (`escape`), the group least-squares bound for deeper
networks (`grouplsq`) and the papers' constructions (`constructions`).

May import: instance, cells, search.  Imported by runs and commands (not by landscape, its
sibling stage).
"""
