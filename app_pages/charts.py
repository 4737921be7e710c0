"""The app's plotly figures: probabilities, confusion, curves, calibration, training
history, class counts and photo-to-photo comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from skin_model.classes import CLASS_NAMES, plain_name

COLORSCALE = "Viridis"  # perceptually uniform and readable with colour-blindness


SHORT = {name: "".join(w[0] for w in name.split()).upper() for name in CLASS_NAMES}


def comparison_chart(earlier: np.ndarray, later: np.ndarray) -> go.Figure:
    """The nine class probabilities of two pictures side by side, one row per class."""
    names = [plain_name(n) for n in CLASS_NAMES][::-1]
    fig = go.Figure(
        [
            go.Bar(
                name=name,
                y=names,
                x=values[::-1],
                orientation="h",
                marker_color=colour,
                text=[f"{v:.0%}" for v in values[::-1]],
                textposition="outside",
                hovertemplate="%{y}: %{x:.1%}<extra></extra>",
            )
            for name, values, colour in (("earlier", earlier, "#9ecae1"), ("later", later, "#08519c"))
        ]
    )
    fig.update_layout(
        barmode="group",
        xaxis=dict(range=[0, 1.1], tickformat=".0%", title="probability"),
        height=460,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", traceorder="normal"),
    )
    return fig


def probability_chart(ranked: list[tuple[str, float]], malignant: set[str]) -> go.Figure:
    """Horizontal bars, most likely on top, with the percentage written on each bar."""
    names = [plain_name(n) for n, _ in ranked][::-1]
    values = [p for _, p in ranked][::-1]
    colors = ["#b2182b" if n in malignant else "#2166ac" for n, _ in ranked][::-1]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=names,
            orientation="h",
            marker_color=colors,
            text=[f"{v:.1%}" for v in values],
            textposition="auto",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"),
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        title="Class probabilities (red: malignant or pre-malignant)",
    )
    return fig


def confusion_figure(cm: list[list[int]], normalise: bool, of: str) -> go.Figure:
    """Annotated confusion matrix, counts or row-normalised (recall per true class);
    ``of`` names the pictures in the title ("test split", "your pictures")."""
    counts = np.asarray(cm, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) if normalise else counts
    text = [[f"{v:.0%}" if normalise else f"{int(v)}" for v in row] for row in values]
    labels = [SHORT[n] for n in CLASS_NAMES]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale=COLORSCALE,
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Confusion matrix ({'row-normalised' if normalise else 'counts'}) — {of}",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        height=520,
    )
    return fig


def curves_figure(
    curves: dict[str, dict[str, list[float]]], per_class: dict[str, dict], kind: str, split: str
) -> go.Figure:
    """ROC or precision-recall curves per class, AUC/AP in the legend."""
    fig = go.Figure()
    for name, curve in curves.items():
        if kind == "roc":
            label = f"{SHORT[name]} (AUC {per_class[name]['roc_auc']:.2f})"
            fig.add_trace(go.Scatter(x=curve["x"], y=curve["y"], name=label, mode="lines"))
        else:
            label = f"{SHORT[name]} (AP {per_class[name]['average_precision']:.2f})"
            fig.add_trace(go.Scatter(x=curve["recall"], y=curve["precision"], name=label, mode="lines"))
    if kind == "roc":
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", mode="lines", line=dict(dash="dot", color="grey")))
        fig.update_layout(xaxis_title="1 − specificity", yaxis_title="sensitivity")
    else:
        fig.update_layout(xaxis_title="recall (sensitivity)", yaxis_title="precision")
    fig.update_layout(title=f"{'ROC' if kind == 'roc' else 'Precision-recall'} curves — {split} split", height=450)
    return fig


def reliability_figure(calibration: dict[str, Any], split: str) -> go.Figure:
    bins = calibration["bins"]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[(b["lower"] + b["upper"]) / 2 for b in bins],
            y=[b["accuracy"] for b in bins],
            width=0.09,
            name="accuracy",
            text=[f"n={b['count']}" for b in bins],
            textposition="outside",
        )
    )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dot", color="grey"))
    )
    fig.update_layout(
        title=f"Reliability diagram — {split} split (ECE {calibration['ece']:.3f})",
        xaxis_title="top-class confidence",
        yaxis_title="accuracy",
        yaxis_range=[0, 1.1],
        height=400,
    )
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    epochs = history.index + 1
    for column, label in (
        ("loss", "training loss"),
        ("accuracy", "training accuracy"),
        ("val_balanced_accuracy", "validation balanced accuracy"),
    ):
        if column in history:
            fig.add_trace(go.Scatter(x=epochs, y=history[column], name=label, mode="lines+markers"))
    fig.update_layout(
        title="Training curves (training split; selection on validation)", xaxis_title="epoch", height=380
    )
    return fig


# Sources and splits in their own colours (and a fixed order), so a bar colour never means
# "seed Train folder" in one chart and "training split" in the one beside it.
COUNT_GROUPS = {
    "seed_train": ("seed set, Train folder", "#8c6d31"),
    "seed_test": ("seed set, Test folder", "#e7ba52"),
    "isic2017": ("ISIC 2017 training set", "#bd9e39"),
    "ham10000": ("HAM10000", "#843c39"),
    "train": ("training split", "#1b9e77"),
    "val": ("validation split", "#7570b3"),
    "test": ("test split", "#d95f02"),
}


def percent_bar(label: str | None = None) -> st.column_config.ProgressColumn:
    """A 0-100 column as a bar with whole percents ("81%", not Streamlit's "81.25%")."""
    return st.column_config.ProgressColumn(label, format="%.0f%%", min_value=0, max_value=100)


def class_counts_figure(counts: dict[str, dict[str, int]], title: str) -> go.Figure:
    """Stacked bars of images per class, one trace per source or split of the audit's counts."""
    fig = go.Figure()
    order = [g for g in COUNT_GROUPS if g in counts] + [g for g in counts if g not in COUNT_GROUPS]
    for group in order:
        per_class = counts[group]
        label, colour = COUNT_GROUPS.get(group, (group, None))
        fig.add_trace(
            go.Bar(
                name=label,
                marker_color=colour,
                x=[SHORT[c] for c in CLASS_NAMES],
                y=[per_class.get(c, 0) for c in CLASS_NAMES],
                text=[per_class.get(c, 0) for c in CLASS_NAMES],
                textposition="auto",
            )
        )
    fig.update_layout(barmode="stack", title=title, height=380, yaxis_title="images")
    return fig


def legend_caption() -> str:
    return " · ".join(f"{SHORT[n]} = {n}" for n in CLASS_NAMES)
