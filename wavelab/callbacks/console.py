"""What a run shows on the console: Lightning's rich progress bar and model summary, minus the
parts that mislead in a step-counted run (``Epoch 0/-2``, ``v_num``, ``FLOPs 0``)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.utilities.model_summary import get_human_readable_count


class StepProgressBar(RichProgressBar):
    """Shows ``step N/max_steps`` (wavelab counts training in steps, over one long epoch) and
    drops ``v_num``, the logger's version, which is always empty here."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            return f"step {trainer.global_step}/{trainer.max_steps}"
        return super()._get_train_description(current_epoch)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(
                self.train_progress_bar_id,
                description=self._get_train_description(trainer.current_epoch),
            )

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class ModelSummary(RichModelSummary):
    """Lightning's rich summary table and parameter counts, without the FLOPs column (it reads 0
    unless the module sets ``example_input_array``) and the train/eval module counts."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        trainable = get_human_readable_count(int(trainable_parameters)).strip()
        frozen = get_human_readable_count(int(total_parameters - trainable_parameters)).strip()
        console.print(
            f"[bold]Params[/]: {trainable} trainable, {frozen} frozen, {model_size:.1f} MB"
        )
