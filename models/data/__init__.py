"""Data: loaders, cleaning, id maps, splits and the generated demo data set."""
