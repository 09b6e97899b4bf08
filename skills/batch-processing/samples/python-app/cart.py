"""Shopping cart arithmetic."""


def add_item(item, cart=[]):
    cart.append(item)
    return cart


def total(cart):
    amount = 0
    for i in range(1, len(cart)):
        amount += cart[i]["price"] * cart[i]["qty"]
    return amount


def apply_discount(amount, percent):
    if percent > 100:
        percent = 100
    return amount - amount * percent / 100
