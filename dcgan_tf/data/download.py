"""--download: the original 100 Simpsons frames, fetched from the original program's repository and
checked against the SHA-256 sums below (anything else is refused and deleted).

Files 0.jpg ... 103.jpg without 49, 63, 74 and 88, at data/Simpsons_64/ of neelindap/DCGAN-tensorflow,
commit 216d0aeb18afca7b29a18f2ce6f02e362ddecafc. The base URL can be changed with --download_url or
the DCGAN_TF_DOWNLOAD_URL environment variable (a mirror, or a local server in tests).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, List, Optional

from dcgan_tf.errors import UserError
from dcgan_tf.runs import atomic_path

COMMIT = "216d0aeb18afca7b29a18f2ce6f02e362ddecafc"
DEFAULT_BASE_URL = (f"https://raw.githubusercontent.com/neelindap/DCGAN-tensorflow/{COMMIT}/data/Simpsons_64/")
URL_ENV = "DCGAN_TF_DOWNLOAD_URL"
FOLDER = "simpsons_64"  # Under --data_dir: the dataset name the frames train as.
TIMEOUT_S = 30

SIMPSONS_SHA256 = {
    "0.jpg": "4cd67a8abf7dfa5fb8471068fd18c1de5034b75c8572993d90d14ab0bae1f1b3",
    "1.jpg": "0a111c29bfc3b829e50595cf4ed0120997b7f241a3ef565685474ae0b29a29d7",
    "2.jpg": "0f1f99b16b43c05c2d10e3dbf3870b13e454c262afe35b09d126995a0b8c77de",
    "3.jpg": "090caccb5e41fa56bf28077e22a500ca2bfe89c0082e85f8eab16107d639add7",
    "4.jpg": "635c2709d936959c426d91eebd5158276456d1e4e5a9a67dafdaf18b86f66909",
    "5.jpg": "1a305814df94819302cf8e313d0b032cfe6216571a4f9bbf75d12dadea6d8516",
    "6.jpg": "64b183aa7bf9107bfe8ffaf30992865199e754ce05f0442cb918795ce1d0beee",
    "7.jpg": "89fd0cf2c8763183ee8f9367ab9f78e80de0356b25e16a5faa096f29042db973",
    "8.jpg": "fab65c257b91eac455e8b490ba0d131d930db75f0f7bd47ce68f5f6a0dc39468",
    "9.jpg": "18137dfd12f6e9622ca4c602f28ddc88482799ecf421328f62d488545982f23c",
    "10.jpg": "5ea1cd843f8a1c9a0f5828e05bb4aaf626ff97013c96e44a1a342e8c9e7b3f2a",
    "11.jpg": "0b54c7af4fc10a6ec236bd6795640dd3916c949c7b7b67f9cd0a5a704ea31d6d",
    "12.jpg": "8939c13f709bd8da72ffd6d8f1144f9e851406734de66983e245bd1e0c097994",
    "13.jpg": "9bd51574a101e9569778a6b4ac5fadc2890600e7e8ae215539a919c03df9c74f",
    "14.jpg": "33365bed94bd554d6652753976398cfd86b7534fe4c0444040c6c28dd432fc14",
    "15.jpg": "1cfd1ff15a8a99c285b05b3d2366546ca217424b06b99f36bbec85dd4c7b8048",
    "16.jpg": "4d2109305346ae01daa3a7451f3e56edb720c76a4dc4513fb6e6e1fdd050c9d2",
    "17.jpg": "52998186752dc78dc363618ef5e5b3cdcc90fb02e575ca66c4823e632702002a",
    "18.jpg": "e3669d81ce1c8693576a69652b7af44d8d73dc9cb4efdbe18c951db176f2dca0",
    "19.jpg": "f4caad98d3ef50831772133a30736d2c2160675823bb9881b6c1ebf48c24b724",
    "20.jpg": "1c34d68501d50174395193657a3a5f4797278d35b99db0e4d89b20a8b5c588d1",
    "21.jpg": "d37c820633b14fdab44ce61321a989f978ad12699520113159de3e76d2037418",
    "22.jpg": "b8fa7f02e790a45d2404994f6c408ebeaeec6c1d9528cdbed25c1342dc379aa9",
    "23.jpg": "33d9a9c8b3c8ec6acfefd8737e4cdfa4d581b5511219523399d459a621c8f811",
    "24.jpg": "01d71b8d9c9daa9580dcc5dff026417ec9a39b3ca4e095149b04a569805653cc",
    "25.jpg": "d916e4176a17c93e79d88c585b9b21bb516061e54c50df09ad4571645def35fc",
    "26.jpg": "af4d23c7506178abd2f13369aeda6a494b6e2b163a836eed0bb46cefe4d26119",
    "27.jpg": "da24a8d44b0b93aa92559511df40ef142f996462d56e1b9aedc644b41a701371",
    "28.jpg": "7ad59a80bee6ec6963f9c31e7f6d3eef5282b56507cd0f1392e6b30df4fecf6f",
    "29.jpg": "d30925387f72b8fadbf94cf226ce640e0111dd1a8d9184cf1fe28fdc31e048d4",
    "30.jpg": "dea9e8730ab038c568b2239b9617fe3a94837dd149d7a01f695cc2c22466f7bf",
    "31.jpg": "9919723904bcba8c59336020c8ee1cc6a2bd85ad96eae249aced23e79dd3680d",
    "32.jpg": "927a3cc06752ba1c32fc0f16f625542fd514376a5ba0bbfdda7c0b2aea98dae3",
    "33.jpg": "96116b4d4b66d15b79bf0dd13113bee2ae90d8d86f446ef91f50de5154c3beb5",
    "34.jpg": "fc25dd15e8307cb494cafc88c9afde67abd886a84894283c01757b4bb32f55f6",
    "35.jpg": "45998baf2f0eb938f1c2b42d25d2469054ea26e44418545c64839a7554c4327e",
    "36.jpg": "23ad3bda3295754ebb32ea8729b6b22fb71043c6cf238b7c68a38cb7e448eb5c",
    "37.jpg": "c7e80f77e2a77e7659227b3c429a7344f150f3a46bfde53c3629fc7a92d2d634",
    "38.jpg": "5c07897434d46a12b3a5e5556bca054515b925d9046bc8ab2bfc77d45eeb72ea",
    "39.jpg": "edbba7df0df549a4b8609e36f27739a4f8c1ca57db9810a1e6d0f29cb3397109",
    "40.jpg": "a67fba669df4a65d98c44342ac04d7d391245bb42795859b01cf34020371d5a1",
    "41.jpg": "a90f4cd6588f6001026b1b7d34b6c78ebae8a2be664fe422ea4702309d38cfe4",
    "42.jpg": "3de82bce19feb4b7455d609de3893c1b4ba640fcd185a4690d4af47f44d499e5",
    "43.jpg": "1d1f239c9446ede06c3ff61bf50604ced7e5c512817c6ce6cf98591d4e6bdf6a",
    "44.jpg": "0872816d78ccdd345490d145db96e7ea8fecb49ca555892025c91f8c2b7e9b7c",
    "45.jpg": "0687cd3ab46a097a8f29d14c2ecea06f81bae995306b654a037a33d00cf0506f",
    "46.jpg": "40683b9752a515455b17a5597424ba94ec00e9e3a8f9a1f544c1c5c36b5683a6",
    "47.jpg": "592ce4391482d7c087d04a897e643cb245a5807ee8d392c8aee655dcc424be93",
    "48.jpg": "105836cb25dc025a051869c60d116cc18157d46ab6cc76a79e4727b3016c8922",
    "50.jpg": "f1092abe0ca01f9fba6d9d96b20a39944034063c300e5566de853c60dc06be6f",
    "51.jpg": "ad3cb69e2a272529576846ad2d16e389ef31e3cb4a4fd097892f30406273530e",
    "52.jpg": "23305f70964c25b754c7ce6fc6a462c95fd264833057e6bfb64c0bb8b00680f8",
    "53.jpg": "1814c55079fa5c603f24418a5790f7c00f0d2102924f8149ac28a0e4086742ce",
    "54.jpg": "21d3ff74f21fb3c80197f52847a909607b0f6d1059ca73400343d9e46bef0e96",
    "55.jpg": "c4b4c070e979407234320c2b76b8ea40532f604e642d0a16cbd1695f0f7332d1",
    "56.jpg": "29836bba3f92a94da5d9e35ae2d301985d5a4970b358f4b3ab2278929840717a",
    "57.jpg": "bb028a5b239bcc3b593a37c4c06e7ead6fe66cdf187aa6ab6219904d7978c8c4",
    "58.jpg": "368074aa529e799880125d33b70aedc57f1f3556700b6e114101245add665689",
    "59.jpg": "d75c3ed726efcd1f49b9a0d37c34c70b25d7ddbd18a994fa9c3b975126dbe6f3",
    "60.jpg": "b327780485edf754c86f9845a73c7e1193fa84f417bd257949921c6b0a1f4c5a",
    "61.jpg": "b225e1707339bbe6e6086c283dded39a795b7702cd38aed4866088e06383e2d1",
    "62.jpg": "3480d4cd21a47d87db0e58cb7470a071b0e7dd223c9f739b9acba29b35e027e7",
    "64.jpg": "68e45427b51e3d707ff0373841ca44abfb3dfeae8051b164572dac754cce2d15",
    "65.jpg": "bf283d2b449772635fb988bddcc1244ad4b69089adb687112838f824191963f2",
    "66.jpg": "093bdba68c3d3080546f77e83a51cb93e909d192d2be0a7b393676b0f3a6cd60",
    "67.jpg": "562723d9c0d7a559218a668897d331d6d690b8e03f055d872a3887a146789acd",
    "68.jpg": "17c2efa8727f3a54be0d23c6d1f012edf2f4339a4e1b0c4fbe6e304ed475375b",
    "69.jpg": "5096a7832638b5bc0346e5ef17009f36645273fdac2f8143e386dcddedfa020a",
    "70.jpg": "65c23ea41f0d310dab4902f0107446d2d636d84ca30696b461102081d6f52e1c",
    "71.jpg": "f32d09c8f015392ceb66b7b4eee9bcdbd3133bcc09f72d0a32c11b6a964a16e4",
    "72.jpg": "0e400ac56dae8b87ca1785d84f57b0bf20754a9410b145b6599d7650aa54c968",
    "73.jpg": "a69ed3cf185629550f26fbf0a6d7010f6da7d2f7e03fc4893d9f5cd8e2e6c022",
    "75.jpg": "f5f0f9ad140b8fa173cc9911e96381e9243eed3bd8a78c2845ce4a2ba438981b",
    "76.jpg": "d3d404c3bf52198ff8b3b47136bd4bd200b58a37be85b0976977f89c5f374f8f",
    "77.jpg": "25cc78b6a517c5cc0c40fe853d78a56e4686ad96ca1293540716711541bf3bdd",
    "78.jpg": "ab3d2e3e76b2e9247c5249b0b836471d5fadc17bdfdf35bfd34a1e6e84186bdf",
    "79.jpg": "633cc58102e02e914ecdf1b6123502c6584027033e8a0854a5e2af7f03ddf5d0",
    "80.jpg": "ac3d751d079e6170f637af81774b1117a53e05bf023bb2ceedc95d51f5c5a36f",
    "81.jpg": "4dfe25d39df1491f61f9f625731b5c8cf141090ebd395567d386a1bfe9508df6",
    "82.jpg": "dd9e908ed5da3c19bdfbbc65025c46e846ed453218a4507fdf3f7cf607709693",
    "83.jpg": "74372b8c8111df451d43c1e618a439414b51b1e684f487b889e69beb9328ec7c",
    "84.jpg": "fc4b11130327a25ccf9ba8bf2bae69ba4d2ffb5858ee29b184d21a735b5d1d85",
    "85.jpg": "d42a4d3f222dee4ec6f6758c32a42e89ce76402070e7e5c396d8fb4464baa861",
    "86.jpg": "6148f48fa344e69673566f2e4ac2789b50ea0367a7929687fa09e8c457b9a759",
    "87.jpg": "f942e87c0f49e601ff4511c4e2b236b3d3d6146ae290e67cd5799d8e1b17e80a",
    "89.jpg": "3f36323a2cd369701885b376913bed5889b4889dd6dda996a7f873e90ea68f05",
    "90.jpg": "6b9aea3aab4668f0153b8a5f642058a8af4a6b712cff8c1468e98e6fc6b32ebc",
    "91.jpg": "4a72d6fe6354fab4f87ac9cf2c361206b615ad19a7dd18a813ee3136adf242ea",
    "92.jpg": "fb8388dfe0e7fecbd2b519bf2b4c81fa7b00b968162e45ae28c4dcf0483d3c71",
    "93.jpg": "128b7911844d1c129a0bbc188636dc4d75c95dc70d005695fd0b4d0ba4c4b8d8",
    "94.jpg": "2a31a7013374d341145be5a2340f044eeeb9b7527a8c70426215d30e22b8f731",
    "95.jpg": "841b0cbba8ed2560e37abdcca384ff5c395b74055c0472f2a7e711a4f4379329",
    "96.jpg": "2d5854f811d44f06139695999376e8c1249c291713aa3c2eb2c0bf5661f07d03",
    "97.jpg": "c0645a8f474178b00d85f6939b382be02979a01afe9d19e3b6f0808fa4ebdcd7",
    "98.jpg": "b3c1605ed2fed6eb943d0ff5fc51f2149061096d22e9269c2ad06ed699f3662f",
    "99.jpg": "6c6fda7144b4e1bd3a0ab7e0d9be0e341c541c80ff46db167f61a2888c2a4c1e",
    "100.jpg": "04e63815a0ae24b0c09155a789c739536eb6530d8f3e46f6dfae23f299224d83",
    "101.jpg": "af2fe9e901cccab8c27357b38395a743a49bb5425bf910998b46fc803947f770",
    "102.jpg": "2d3440b83e432a486ecb0e78af3f38d129103af13bed32dc0d5758782a5eae4a",
    "103.jpg": "c1e332d417f8b687dbc971778c89fc7fa79ff6c4f0229b5550c524c710885a53",
}


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def base_url(override: str = "") -> str:
    url = override or os.environ.get(URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def _fetch(url: str, target: str) -> None:
    """Downloads `url` into the file `target`."""
    import urllib.request  # Here, not above: training imports this module for FOLDER, not for the network.

    with open(target, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        while True:
            chunk = response.read(1 << 16)
            if not chunk:
                break
            out.write(chunk)


def download_simpsons(folder: str, url: str = "", log: Optional[Callable[[str], None]] = print) -> List[str]:
    """Puts the 100 original images into `folder` (files already there with the right sum are kept);
    returns their paths. UserError when a file cannot be fetched or does not match its sum."""
    url = base_url(url)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {folder} ({e.strerror or e}); choose another --data_dir.") from None
    paths, fetched = [], 0
    for name, expected in SIMPSONS_SHA256.items():
        path = os.path.join(folder, name)
        paths.append(path)
        if os.path.isfile(path) and sha256_of(path) == expected:
            continue
        # The file appears only once whole and checked; an error leaves nothing of it.
        with atomic_path(path) as part:
            try:
                _fetch(url + name, part)
            except (OSError, ValueError) as e:  # OSError includes urllib's URLError and HTTPError.
                reason = getattr(e, "reason", None) or e
                raise UserError(f"cannot download {url + name} ({reason}); check the network, or set "
                                f"--download_url / {URL_ENV} to a copy of the images.") from None
            actual = sha256_of(part)
            if actual != expected:
                raise UserError(f"refused {url + name}: its SHA-256 is {actual}, not the original's "
                                f"{expected}; nothing of it was kept. Check --download_url / {URL_ENV}.")
        fetched += 1
    if log:
        log(f"dcgan_tf: {fetched} image(s) downloaded and all {len(paths)} checked in {folder}")
    return paths
