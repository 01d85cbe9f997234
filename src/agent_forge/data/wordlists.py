"""Small built-in fact tables for the task generators.

Every fact here is unambiguous on purpose: the generators build questions whose single right answer
follows from these tables, so an answer can be verified without a human or a model.
"""

from __future__ import annotations

# (name, subject pronoun, possessive pronoun)
PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("Tom", "he", "his"),
    ("Mary", "she", "her"),
    ("Ali", "he", "his"),
    ("Sofia", "she", "her"),
    ("Ben", "he", "his"),
    ("Lena", "she", "her"),
    ("Omar", "he", "his"),
    ("Yuki", "she", "her"),
    ("Carlos", "he", "his"),
    ("Priya", "she", "her"),
    ("Jack", "he", "his"),
    ("Emma", "she", "her"),
    ("Noah", "he", "his"),
    ("Aisha", "she", "her"),
    ("Leo", "he", "his"),
    ("Mia", "she", "her"),
    ("Sam", "he", "his"),
    ("Nora", "she", "her"),
    ("Ivan", "he", "his"),
    ("Zoe", "she", "her"),
    ("Kofi", "he", "his"),
    ("Hana", "she", "her"),
    ("Luis", "he", "his"),
    ("Grace", "she", "her"),
    ("Ravi", "he", "his"),
    ("Chloe", "she", "her"),
    ("Max", "he", "his"),
    ("Ines", "she", "her"),
    ("Pedro", "he", "his"),
    ("Julia", "she", "her"),
    ("Kai", "he", "his"),
    ("Amara", "she", "her"),
    ("Felix", "he", "his"),
    ("Rosa", "she", "her"),
    ("Ethan", "he", "his"),
    ("Lily", "she", "her"),
)

COUNTABLE_OBJECTS: tuple[str, ...] = (
    "apples",
    "pencils",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "coins",
    "stamps",
    "shells",
    "oranges",
    "cards",
    "balloons",
    "crayons",
    "buttons",
    "eggs",
    "candies",
    "toy cars",
    "flowers",
    "rocks",
    "beads",
    "notebooks",
    "bananas",
    "cupcakes",
    "tickets",
    "pens",
    "blocks",
    "feathers",
    "lemons",
    "plums",
    "stones",
    "ribbons",
    "muffins",
    "peaches",
    "carrots",
    "cherries",
    "magnets",
)

CONTAINERS: tuple[str, ...] = ("boxes", "bags", "packs", "jars", "baskets", "crates", "cartons", "tins")

CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "cherry", "grape", "mango", "pear", "peach", "plum", "lemon", "orange"),
    "animal": ("dog", "cat", "horse", "lion", "rabbit", "tiger", "sheep", "goat", "bear", "fox"),
    "vehicle": ("car", "bus", "truck", "bicycle", "train", "boat", "airplane", "tractor", "van", "scooter"),
    "color": ("red", "blue", "green", "yellow", "purple", "brown", "pink", "black", "white", "gray"),
    "tool": ("hammer", "saw", "wrench", "screwdriver", "drill", "shovel", "rake", "pliers", "chisel", "axe"),
    "musical instrument": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "harp", "cello"),
    "vegetable": ("carrot", "potato", "onion", "cabbage", "lettuce", "spinach", "celery", "radish"),
    "piece of furniture": ("chair", "table", "sofa", "bed", "desk", "shelf", "stool", "wardrobe"),
    "body part": ("hand", "foot", "elbow", "knee", "shoulder", "ankle", "wrist", "chin"),
    "planet": ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"),
    "shape": ("circle", "square", "triangle", "rectangle", "oval", "hexagon", "pentagon", "cube"),
    "month": ("January", "March", "April", "June", "July", "August", "October", "December"),
}

# (question templates, things that have the property, things that clearly do not)
PROPERTIES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("Which object will float on water?", "Which of these floats in a pond?"),
        ("a wooden block", "a cork", "a dry leaf", "a plastic duck", "a feather", "an empty bottle"),
        ("a rock", "an iron nail", "a coin", "a glass marble", "a brick", "a steel key"),
    ),
    (
        ("Which material conducts electricity?", "Which object lets electric current pass through it?"),
        ("a copper wire", "an iron nail", "an aluminum can", "a steel spoon", "a silver ring"),
        (
            "a rubber band",
            "a wooden stick",
            "a plastic cup",
            "a glass jar",
            "a cotton shirt",
            "a paper towel",
        ),
    ),
    (
        ("Which object is attracted by a magnet?", "Which item will stick to a magnet?"),
        ("an iron nail", "a steel paper clip", "a steel spoon", "an iron key", "a steel screw"),
        (
            "a plastic spoon",
            "a wooden block",
            "a glass marble",
            "a rubber ball",
            "a paper cup",
            "a wool sock",
        ),
    ),
    (
        ("Which animal can fly?", "Which of these animals is able to fly?"),
        ("an eagle", "a sparrow", "a bat", "a bee", "a butterfly", "an owl", "a pigeon"),
        ("a dog", "a cow", "a snake", "a horse", "a turtle", "a pig", "a goat"),
    ),
    (
        ("Which animal lives in water?", "Which of these animals lives in the sea?"),
        ("a shark", "a whale", "a dolphin", "an octopus", "a jellyfish", "a tuna"),
        ("a lion", "a camel", "a rabbit", "a squirrel", "a giraffe", "a zebra"),
    ),
    (
        ("Which one gives off its own light?", "Which of these is a source of light?"),
        ("the Sun", "a candle flame", "a lit lamp", "a flashlight that is on", "a campfire"),
        ("the Moon", "a mirror", "a book", "a rock", "a spoon", "a pillow"),
    ),
    (
        ("Which of these is a liquid at room temperature?", "Which substance is a liquid in a warm room?"),
        ("water", "milk", "orange juice", "olive oil", "vinegar"),
        ("sand", "a stone", "a wooden spoon", "salt", "a metal key", "sugar"),
    ),
    (
        ("Which of these is a living thing?", "Which one is alive?"),
        ("a tree", "a mushroom", "a frog", "a rose bush", "a worm", "a bird"),
        ("a chair", "a stone", "a cloud", "a bicycle", "a spoon", "a pencil"),
    ),
)

# (goal, best means, means that clearly do not reach the goal)
GOALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("cut a sheet of paper", "scissors", ("a spoon", "a pillow", "a sponge", "a balloon")),
    ("dry your wet hands", "a towel", ("a fork", "a glass of water", "a rock", "a candle")),
    ("boil water", "a pot on a hot stove", ("a paper bag", "a fridge", "a fan", "a bowl of ice")),
    ("measure the length of a table", "a ruler", ("a spoon", "a sock", "a pillow", "an eraser")),
    ("tighten a screw", "a screwdriver", ("a banana", "a towel", "a feather", "a cup")),
    ("write a note on paper", "a pencil", ("a fork", "an ice cube", "a plate", "a shoe")),
    ("keep milk cold", "a refrigerator", ("an oven", "a sunny window", "a heater", "a toaster")),
    ("see in a dark room", "a flashlight", ("sunglasses", "a blanket", "a spoon", "a closed box")),
    ("carry water from a well", "a bucket", ("a net", "a sieve", "a paper towel", "a fork")),
    ("sweep dust off the floor", "a broom", ("a hammer", "a cup", "a pillow", "a pencil")),
    ("drive a nail into wood", "a hammer", ("a sponge", "a feather", "a towel", "a balloon")),
    ("tell what time it is", "a clock", ("a ruler", "a spoon", "a pillow", "a sock")),
    ("stay dry in the rain", "an umbrella", ("a fan", "a net", "a paper bag with holes", "a sieve")),
    ("dig a hole in the garden", "a shovel", ("a fork", "a feather", "a napkin", "a toothbrush")),
    ("brush your teeth", "a toothbrush", ("a hammer", "a rake", "a comb", "a sponge full of soap")),
    ("tie two sticks together", "a piece of string", ("a glass of water", "a candle", "sand", "a coin")),
    (
        "cool down hot soup",
        "let it sit and stir it",
        ("put it on the stove", "add hot water", "cover it in a blanket", "put it in the oven"),
    ),
    (
        "melt a block of ice quickly",
        "put it in a warm place",
        (
            "put it in a freezer",
            "cover it with snow",
            "keep it in the shade outside in winter",
            "add more ice",
        ),
    ),
)

# Lists ordered from least to most along a named dimension.
ORDERED_FACTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Which animal is the largest?",
        "Which animal is the smallest?",
        ("an ant", "a mouse", "a cat", "a dog", "a horse", "an elephant", "a blue whale"),
    ),
    (
        "Which object is the heaviest?",
        "Which object is the lightest?",
        ("a feather", "a pencil", "a book", "a chair", "a piano", "a car", "a truck"),
    ),
    (
        "Which is the longest amount of time?",
        "Which is the shortest amount of time?",
        ("a second", "a minute", "an hour", "a day", "a week", "a month", "a year"),
    ),
    (
        "Which distance is the longest?",
        "Which distance is the shortest?",
        ("one millimeter", "one centimeter", "one meter", "one kilometer", "one hundred kilometers"),
    ),
    (
        "Which of these is the hottest?",
        "Which of these is the coldest?",
        ("an ice cube", "cold tap water", "warm bath water", "boiling water", "a candle flame"),
    ),
)

NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
