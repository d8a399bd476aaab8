"""Use cfer's strategy in your own Avalanche script: a two-layer MLP learning digits one class at a time."""

import torch
from avalanche.benchmarks.scenarios import class_incremental_benchmark
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import TensorDataset

from cfer.core import expand_linear
from strategies import create_strategy


class MLP(nn.Module):  # what cfer's plugins need: backbone, head, num_classes, add_classes
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone, self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU()), nn.Linear(64, num_classes)

    num_classes = property(lambda self: self.head.out_features)

    def add_classes(self, num_new: int) -> None:
        self.head = expand_linear(self.head, num_new)  # from cfer.core: old units copied, new Glorot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def digits(x, y):  # noqa: ANN001, ANN201
    data = TensorDataset(torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y))
    data.targets = y.tolist()
    return data


def run(strategy_name: str = "cfer", seed: int = 0) -> float:
    """Trains on 5 digits, then adds the other 5 one at a time; returns the final accuracy on all 10."""
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = train_test_split(*load_digits(return_X_y=True), test_size=0.3, random_state=0)
    stream = class_incremental_benchmark({"train": digits(x_train, y_train), "test": digits(x_test, y_test)},
                                         class_order=list(range(10)), num_classes_per_exp=[5, 1, 1, 1, 1, 1])
    model = MLP(num_classes=5)
    options = {"total_num_classes": 10} if strategy_name == "cfer" else {}
    strategy = create_strategy(strategy_name, model, torch.optim.Adam(model.parameters(), lr=1e-2), train_mb_size=32,
                               train_epochs=10, eval_mb_size=256, device="cpu", memory_size=370, **options,
                               evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]))
    for experience in stream.train_stream:
        strategy.train(experience)
    results = strategy.eval(stream.test_stream)
    return next(value for key, value in results.items() if key.startswith("Top1_Acc_Stream/eval_phase/test_stream"))


if __name__ == "__main__":
    print(f"cfer {run('cfer'):.3f}  naive {run('naive'):.3f}  (final accuracy on all 10 digits)")
