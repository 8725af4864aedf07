"""What hosted models cost, and what a run has spent.

Prices are per million tokens, input and output; thinking tokens are billed as output (Gemini's
and OpenAI's reasoning models both do so). The table holds a few models' published list prices
(standard tier, prompts up to 200K tokens) as a starting point: providers change them, so a run
records the price it used, and ``--price-input/--price-output`` override it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float
    source: str = "given"

    def cost(self, prompt_tokens: int, output_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


# list prices as published by the providers (USD per 1M tokens, standard tier, <= 200K-token prompts)
KNOWN_PRICES = {
    "gemini-2.5-pro": Price(1.25, 10.00, "ai.google.dev/gemini-api/docs/pricing (2025 list price)"),
    "gemini-2.5-flash": Price(0.30, 2.50, "ai.google.dev/gemini-api/docs/pricing (2025 list price)"),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, "ai.google.dev/gemini-api/docs/pricing (2025 list price)"),
    "gpt-4o": Price(2.50, 10.00, "openai.com/api/pricing (2025 list price)"),
    "gpt-4o-mini": Price(0.15, 0.60, "openai.com/api/pricing (2025 list price)"),
}


def price_for(
    model: str, input_per_million: float | None = None, output_per_million: float | None = None
) -> Price | None:
    """The price given (both numbers), else the table's for the model name (its last path part, the
    longest known prefix: ``gemini-2.5-pro-preview`` is priced as ``gemini-2.5-pro``), else None."""
    if input_per_million is not None or output_per_million is not None:
        if input_per_million is None or output_per_million is None:
            raise ValueError("give both --price-input and --price-output (USD per million tokens)")
        return Price(input_per_million, output_per_million, "given")
    name = model.rsplit("/", 1)[-1].lower()
    matches = [known for known in KNOWN_PRICES if name.startswith(known)]
    return KNOWN_PRICES[max(matches, key=len)] if matches else None


@dataclass
class Spend:
    """Tokens and cost of the calls made so far (answers that carry ``usage``)."""

    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    seconds: float = 0.0

    def add(self, usage: dict | None, seconds: float | None = None) -> None:
        if not usage:
            return
        self.calls += 1
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.output_tokens += int(usage.get("output_tokens") or 0)
        self.thought_tokens += int(usage.get("thought_tokens") or 0)
        self.seconds += float(seconds or 0.0)

    @classmethod
    def of(cls, answers: Iterable[dict]) -> Spend:
        spend = cls()
        for answer in answers:
            spend.add(answer.get("usage"), answer.get("seconds"))
        return spend

    def cost(self, price: Price | None) -> float | None:
        if price is None:
            return None
        return price.cost(self.prompt_tokens, self.output_tokens + self.thought_tokens)

    def record(self, price: Price | None) -> dict:
        cost = self.cost(price)
        return {**{k: v for k, v in asdict(self).items() if k != "seconds"},
                "cost_usd": round(cost, 6) if cost is not None else None,
                "price": asdict(price) if price is not None else None}  # fmt: skip


class BudgetReached(RuntimeError):
    """A run stopped because its spending reached ``--budget``; what was answered is kept."""
