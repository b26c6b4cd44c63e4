"""Orders: the order input and its validation, the partner-acceptance wait, the values the order
workflow carries, and why an order failed."""
