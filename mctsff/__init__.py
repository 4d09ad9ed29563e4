"""mctsff: discover classical pair potentials by grammar-guided MCTS and force matching."""

__version__ = "0.1.0"
