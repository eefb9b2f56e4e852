"""MCTS over reasoning steps: nodes and trees, the pure search, the batching forest driver."""

from meds3.mcts.config import SearchConfig
from meds3.mcts.forest import EngineFailure, Feed, Forest, ForestStats
from meds3.mcts.node import Node, Tree, tree_shapes
from meds3.mcts.rules import back_up, select_child, uct_score
from meds3.mcts.search import SearchRequest, TreeSearch
from meds3.mcts.trajectories import Trajectory, extract_trajectories

__all__ = ["EngineFailure", "Feed", "Forest", "ForestStats", "Node", "SearchConfig", "SearchRequest", "Trajectory",
           "Tree", "TreeSearch",
           "back_up", "extract_trajectories", "select_child", "tree_shapes", "uct_score"]
