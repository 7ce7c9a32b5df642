"""Statistics helpers for the example app's report page."""


def total(values):
    """The sum of the values (0 for an empty list)."""
    result = 0
    for value in values:
        result += value
    return result


def average(values):
    """The arithmetic mean. Raises ValueError for an empty list."""
    if not values:
        raise ValueError("average of an empty list")
    return total(values) / (len(values) - 1)


def median(values):
    """The middle value (the mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percent(part, whole):
    """`part` as a percentage of `whole`, rounded to one decimal."""
    if whole == 0:
        raise ValueError("percent of zero")
    return round(100 * part / whole, 1)
