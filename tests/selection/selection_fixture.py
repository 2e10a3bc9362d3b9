"""A small codebase (`shop`) and hand-built plans whose grounding is known, shared by the selection tests.

Call graph by hand (what static analysis can see):
  shop.cart.line_total -> shop.pricing.apply_tax, shop.pricing.discount (imported as `disc`)
  shop.cart.Cart.add -> shop.inventory.reserve ; shop.cart.Cart.total -> shop.cart.line_total, shop.inventory.price_of
  shop.checkout.checkout -> shop.cart.Cart (its __init__); basket.add()/basket.total() are calls on a local: dynamic
  shop.checkout.quote -> shop.cart.line_total (through `from shop import cart as cart_mod`)
  shop.checkout.main -> checkout, quote
Impact of changing shop.pricing.apply_tax at depth 2: line_total, module shop.cart (depth 1: it imports apply_tax),
Cart.total, quote, module shop.checkout (depth 2: it imports shop.cart).
"""
from __future__ import annotations

import json
from pathlib import Path

FILES = {
    "shop/__init__.py": "from .cart import Cart\n",
    "shop/pricing.py": (
        "TAX_RATE = 0.2\n\n\n"
        "def apply_tax(amount):\n    return amount * (1 + TAX_RATE)\n\n\n"
        "def discount(amount, pct):\n    return amount * (1 - pct)\n"),
    "shop/inventory.py": (
        "import json\n\nSTOCK = {}\n\n\n"
        "def reserve(sku):\n    STOCK[sku] = STOCK.get(sku, 0) - 1\n\n\n"
        "def price_of(sku):\n    return STOCK.get(sku, 0)\n\n\n"
        "def load(path):\n    with open(path) as f:\n        STOCK.update(json.load(f))\n    restock_all()\n"),
    "shop/cart.py": (
        "from shop.pricing import apply_tax, discount as disc\n"
        "from . import inventory\n\n\n"
        "def line_total(amount, pct=0.0):\n    return apply_tax(disc(amount, pct))\n\n\n"
        "class Cart:\n"
        "    def __init__(self):\n        self.items = []\n\n"
        "    def add(self, sku):\n        inventory.reserve(sku)\n        self.items.append(sku)\n\n"
        "    def total(self):\n        return line_total(sum(inventory.price_of(s) for s in self.items))\n"),
    "shop/checkout.py": (
        "from shop import cart as cart_mod\nfrom shop.cart import Cart\n\n\n"
        "def checkout(skus):\n    basket = Cart()\n    for s in skus:\n        basket.add(s)\n"
        "    return basket.total()\n\n\n"
        "def quote(amount):\n    return cart_mod.line_total(amount)\n\n\n"
        "def main():\n    return checkout([]), quote(10)\n"),
}

# B and C tie on the scalar (B wins: smaller id); A scores lowest but is the best grounded.
PLAN_A = """## Analysis
`shop.pricing.apply_tax` is called by `shop.cart.line_total`. `shop.cart.Cart.add` calls `shop.inventory.reserve`.

## Plan
Modify `shop.pricing.apply_tax` to round to cents. Changing `apply_tax` affects `line_total`, `Cart.total` and
`shop.checkout.quote`.

## Risks
Rounding may surprise users who compare totals by hand.
"""
PLAN_B = """## Analysis
`shop.pricing.apply_tax` is called by `shop.checkout.checkout`. VAT is handled by `shop.pricing.compute_vat`.

## Plan
Modify `shop.pricing.apply_tax`; this reaches `shop.cart.line_total`.

## Risks
None worth noting.
"""
PLAN_C = {
    "Analysis": "`shop.cart.Cart.total` calls `shop.cart.line_total` and `shop.cart.Cart.checkout_all`.",
    "Plan": "Update `shop.inventory.price_of` to read the catalogue.",
    "Risks": "Stale prices.",
}
RECORDS = [
    {"id": "A", "text": PLAN_A, "score": 0.7},
    {"id": "B", "text": PLAN_B, "score": 0.9},
    {"id": "C", "text": PLAN_C, "score": 0.9},
]


def write_repo(root: Path) -> Path:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def write_samples(path: Path, records=RECORDS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
