"""What happens to an order after it is accepted: inventory reserved, confirmation sent."""
