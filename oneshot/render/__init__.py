"""Pictures of a search: cell diagrams of genotypes (Graphviz) and alpha-evolution plots."""

from oneshot.render.alpha_plot import (AlphaHistory, alpha_figures, plot_alpha_evolution,
                                       read_alpha_history, save_alpha_plots)
from oneshot.render.drawing import (GraphvizMissingError, INSTALL_HINT, dot_available, draw,
                                    graph_pixels, write_diagrams)
from oneshot.render.registry import Renderer, cell_graphs, list_renderers, register_renderer

__all__ = [
    "AlphaHistory", "GraphvizMissingError", "INSTALL_HINT", "Renderer", "alpha_figures",
    "cell_graphs", "dot_available", "draw", "graph_pixels", "list_renderers",
    "plot_alpha_evolution", "read_alpha_history", "register_renderer", "save_alpha_plots",
    "write_diagrams",
]
