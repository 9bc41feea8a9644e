"""`python -m hotline.nlu train|parse|eval`: the `hotline nlu` group without the main CLI."""

from hotline.nlu.cli import nlu

if __name__ == "__main__":
    nlu(prog_name="hotline nlu")
