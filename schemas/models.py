"""Pydantic mirrors of the JSON Schema files (a test proves they accept and reject the same things)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Tag = Annotated[str, Field(min_length=1, max_length=60)]


class ArticleAnalysis(BaseModel):
    """The model's answer for one item."""

    model_config = ConfigDict(extra="forbid")

    relevance_score: int = Field(ge=1, le=10, strict=True)
    summary: str = Field(max_length=300)
    key_insights: list[Tag] = Field(max_length=10)
    company_names: list[Tag] = Field(max_length=10)


class RelevanceDistribution(BaseModel):
    """The model's probabilities over the score, and what was read from them."""

    model_config = ConfigDict(extra="forbid")

    expected: float = Field(ge=1, le=10)
    confidence: float = Field(ge=0, le=1)
    probabilities: list[Annotated[float, Field(ge=0, le=1)]] = Field(min_length=10, max_length=10)
    rule: str


class ArticleResult(ArticleAnalysis):
    """One analyzed item as the tools return it."""

    title: str
    url: str | None
    content: str = Field(max_length=2000)
    is_sponsored: bool
    truncated: bool
    complete: bool = Field(strict=True)
    incomplete_reason: Literal["max_tokens"] | None
    relevance: RelevanceDistribution | None


class NewsletterReport(BaseModel):
    """A newsletter's items, analyzed, with a Markdown report."""

    model_config = ConfigDict(extra="forbid")

    source: str | None
    subject: str | None
    date: str | None
    format: Literal["tldr", "html", "markdown", "text"]
    items_found: int = Field(ge=0, strict=True)
    notes: list[str]
    items: list[ArticleResult]
    markdown: str
