"""Typed queries for ``skulens bench-words``, written down on 2026-12-07 before anything was measured
with them (issue 31): for each label of a data set, its class name as a shopper would type it, and
for some labels a few paraphrases that share no word with the class name where that was natural.
Nothing here was changed after seeing a figure."""

from __future__ import annotations

CLASS_NAMES = {
    # Caltech-101 labels whose folder name is not how anyone types the class
    "Faces": "face", "Faces_easy": "face close up", "Leopards": "leopard", "Motorbikes": "motorbike",
    "car_side": "car", "cougar_body": "cougar", "water_lilly": "water lily", "yin_yang": "yin yang symbol",
    "BACKGROUND_Google": "background",
    # clothing
    "T-Shirt": "t-shirt", "Outwear": "outerwear", "Longsleeve": "long sleeve top",
}

PARAPHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "caltech101": {
        "airplanes": ("passenger jet", "aircraft"),
        "anchor": ("ship anchor",),
        "bonsai": ("small potted tree",),
        "butterfly": ("colourful winged insect",),
        "camera": ("photo camera",),
        "cellphone": ("mobile phone", "smartphone"),
        "chair": ("seat",),
        "cup": ("mug for tea",),
        "dalmatian": ("spotted dog",),
        "dolphin": ("sea mammal",),
        "electric_guitar": ("rock guitar",),
        "elephant": ("large grey animal with a trunk",),
        "grand_piano": ("piano",),
        "headphone": ("headphones for music",),
        "helicopter": ("rotorcraft",),
        "lamp": ("table light",),
        "laptop": ("notebook computer",),
        "Motorbikes": ("motorcycle",),
        "pizza": ("italian food",),
        "revolver": ("handgun",),
        "rooster": ("cockerel", "chicken"),
        "saxophone": ("jazz horn",),
        "scissors": ("shears for cutting",),
        "soccer_ball": ("football",),
        "stapler": ("office stapling tool",),
        "strawberry": ("red berry",),
        "sunflower": ("yellow flower",),
        "umbrella": ("parasol for rain",),
        "watch": ("wristwatch",),
        "wheelchair": ("chair with wheels",),
        "wrench": ("spanner",),
    },
    "clothing": {
        "Blazer": ("suit jacket",),
        "Blouse": ("women's shirt",),
        "Body": ("bodysuit",),
        "Dress": ("gown",),
        "Hat": ("cap",),
        "Hoodie": ("hooded sweatshirt",),
        "Longsleeve": ("long sleeved shirt",),
        "Outwear": ("winter jacket", "coat"),
        "Pants": ("trousers", "jeans"),
        "Polo": ("polo shirt",),
        "Shirt": ("button-down shirt",),
        "Shoes": ("sneakers", "footwear"),
        "Shorts": ("short pants",),
        "Skirt": ("mini skirt",),
        "T-Shirt": ("tee",),
        "Top": ("tank top",),
        "Undershirt": ("vest",),
    },
}

GROCERY_NAMES: dict[str, tuple[str, ...]] = {
    # coarse class -> its generic name, then paraphrases
    "Apple": ("apple", "crisp fruit"),
    "Asparagus": ("asparagus",),
    "Aubergine": ("aubergine", "eggplant"),
    "Avocado": ("avocado",),
    "Banana": ("banana", "yellow fruit"),
    "Cabbage": ("cabbage",),
    "Carrots": ("carrots", "orange root vegetable"),
    "Cucumber": ("cucumber",),
    "Garlic": ("garlic",),
    "Ginger": ("ginger root",),
    "Juice": ("juice", "fruit drink"),
    "Kiwi": ("kiwi",),
    "Leek": ("leek",),
    "Lemon": ("lemon", "sour citrus"),
    "Lime": ("lime",),
    "Mango": ("mango", "tropical fruit"),
    "Melon": ("melon",),
    "Milk": ("milk", "dairy drink"),
    "Mushroom": ("mushrooms",),
    "Nectarine": ("nectarine",),
    "Oat-Milk": ("oat milk", "plant based milk"),
    "Oatghurt": ("oat yoghurt",),
    "Onion": ("onion",),
    "Orange": ("orange", "citrus fruit"),
    "Papaya": ("papaya",),
    "Passion-Fruit": ("passion fruit",),
    "Peach": ("peach",),
    "Pear": ("pear", "something like a pear"),
    "Pepper": ("bell pepper", "red pepper"),
    "Pineapple": ("pineapple",),
    "Plum": ("plum",),
    "Pomegranate": ("pomegranate",),
    "Potato": ("potatoes", "spuds"),
    "Red-Beet": ("beetroot",),
    "Red-Grapefruit": ("grapefruit",),
    "Satsumas": ("satsuma", "mandarin"),
    "Sour-Cream": ("sour cream",),
    "Sour-Milk": ("sour milk", "fermented milk"),
    "Soy-Milk": ("soy milk",),
    "Soyghurt": ("soy yoghurt",),
    "Tomato": ("tomatoes",),
    "Yoghurt": ("yoghurt", "yogurt"),
    "Zucchini": ("zucchini", "courgette"),
}


def class_name(label: str) -> str:
    """How a shopper types a data set's label."""
    return CLASS_NAMES.get(label, label.replace("_", " ").replace("-", " ").lower())
