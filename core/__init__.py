"""The shared ground floor: settings, errors, data periods, file helpers and Asset names.

Every other package of the project may import it; it imports none of them.
"""
