"""`clas-client`: run a served module over files, folders and globs from the shell.

    clas-client classify photos/ --top-k 3                    # one JSON line per image
    clas-client detect 'shelf/*.jpg' --save-vis out/           # boxes drawn into out/
    clas-client recognize query.jpg --format csv -o hits.csv
    clas-client gallery add products/cola/*.jpg --label cola
    clas-client gallery import gallery_list.txt --image-root images/
    clas-client gallery search query.jpg --k 5
    clas-client gallery remove --labels cola
    clas-client gallery stats
    clas-client video clip.mp4 --every 5 --save-video annotated.mp4

Exit codes: 0 every input succeeded; 1 some inputs failed (each named on stderr and as an
"error" record; the other results are still written); 2 bad command line or no input found;
3 the server could not be used at all (unreachable, token refused, or it refused a gallery
command).

arguments: the command line; inputs: the images it names; images: the image and gallery
commands; records: what is written per image; video_command; main: the entry point.
"""
from .inputs import expand_inputs
from .main import EXIT_OK, EXIT_SERVER, EXIT_SOME_FAILED, EXIT_USAGE, main

__all__ = ["EXIT_OK", "EXIT_SERVER", "EXIT_SOME_FAILED", "EXIT_USAGE", "expand_inputs", "main"]
