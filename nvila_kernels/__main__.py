from . import info

print(info())
