"""Build the demo's tiny MMS-style CTC ASR model, reproducibly, from synthesized speech only.

The demo corpus (``resources/demo``) is read by espeak-ng; so is everything this model learns
from, but never a sentence of the demo chapters: the training texts are random sentences made
of common words and of pseudo-words drawn from each language's syllable structure and spelling,
and any sentence that shares four consecutive words with a demo verse or heading is dropped.

Stages (each is skipped when its output exists; training resumes from its checkpoints)::

    data      synthesize easy/train/valid utterances per language -> <work>/data/<lang>/<split>.jsonl
    easy      curriculum: random weights, short sentences, joint vocabulary mul -> <work>/models/easy
    base      all parameters, the full data of both languages, mul           -> <work>/models/base
    adapters  per language: adapter layers + lm_head on the frozen base      -> <work>/models/{smo,por}
    pack      the shipped HF folder, adapter.<lang>.safetensors, card; eval  -> --out (eval.json)

Each training stage is one :func:`tala.finetune.train_ctc.train` run. ``<work>`` is ``.cache/demo_model``.

    PYTHONPATH=scripts python -m tala.demo.model --out resources/demo/model

The model is MMS-shaped (stable layer norm, attention adapters in every layer, a nested per-language
``vocab.json``), so the workflow loads it exactly as it loads ``facebook/mms-1b-all``::

    model = Wav2Vec2ForCTC.from_pretrained(path); model.load_adapter("smo")
    processor = Wav2Vec2Processor.from_pretrained(path); processor.tokenizer.set_target_lang("smo")
"""

# %%
from __future__ import annotations

import os

# On a laptop shared with other work, OpenMP threads that spin while waiting for a busy core make
# training several times slower; passive waiting costs little when the cores are free. Set before
# torch starts (torch is imported lazily below).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import multiprocessing
import re
import shutil
import sys
import tempfile
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

import tala
from tala.audio_io import SAMPLE_RATE
from tala.errors import InputError, run_cli
from tala.fileio import atomic_path, read_jsonl, replace_dir, write_json_atomic, write_text_atomic

DEFAULT_SEED = 20_240_611
DEFAULT_WORK = Path(".cache/demo_model")
DEMO_ROOT = Path(__file__).resolve().parents[3] / "resources" / "demo"

OKINA = "\u02bb"
# Samoan texts write the glottal stop with the okina or with any of these look-alikes.
OKINA_VARIANTS = ("'", "\u2018", "\u2019", "`", "\u02bc")
WORD_DELIMITER = "|"
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # <pad> is the CTC blank, id 0
JOINT_LANG = "mul"  # ISO 639 "multiple languages": the base model's joint vocabulary

# %% [markdown]
# ## Languages: alphabets, voices, words

# %%


@dataclass(frozen=True)
class LanguageSpec:
    code: str  # ISO 639-3, the adapter name
    name: str  # the demo corpus folder
    voice: str  # espeak-ng voice, the same as the demo's
    alphabet: str  # the characters of the normalized text, besides the word delimiter


SAMOAN_ALPHABET = "aāeēiīoōuūfglmnpstvhkr" + OKINA
PORTUGUESE_ALPHABET = "abcdefghijklmnopqrstuvwxyzáàâãçéêíóôõúü"

LANGUAGES: dict[str, LanguageSpec] = {
    "smo": LanguageSpec("smo", "samoan", "haw", SAMOAN_ALPHABET),
    "por": LanguageSpec("por", "portuguese", "pt", PORTUGUESE_ALPHABET),
}

# Common words, typed for this model (Samoan after the style of the 1887 Bible and everyday speech).
SAMOAN_FUNCTION_WORDS = """
o le i e ma a na ua sa ai lea ia ona mai atu foʻi lava se ni lona lana uma latou ina ae pe aʻe ifo
nei lenei iā te oe aʻu ita tatou matou outou oulua laʻua loʻu laʻu lou lau lo la ana ona fea ane ō
nā lē sē pei poʻo nisi isi tele tasi lua tolu fā lima ono fitu valu iva sefulu selau afe fia ē
iinei iina lena faʻapea faʻatasi ioe leai peʻa aua nate tou mātou lātou nai oi
""".split()

SAMOAN_CONTENT_WORDS = """
tagata fafine tamaloa tama teine tamaitiiti tamaʻitaʻi aliʻi faipule matai aiga fale nuʻu afioaga malae
lotu ekalesia faifeʻau tusi upu gagana aso vaiaso masina tausaga taimi pō ao taeao afiafi lā fetu lagi
eleele moana sami vai afi matagi timu mauga vanu vaitafe ala laʻau vao fanua maumaga moa puaʻa povi
solofanua iʻa manu manulele ʻulu niu talo ufi fuālaʻau popo meaʻai ipu tāne avā toeaina loʻomatua uso
tuafafine tuagane tinā tamā afafine fanau ulu mata isu gutu vae loto agaga tino toto ivi fatu fala vaʻa
taʻavale vaʻalele mālō aʻoga faiaʻoga tusitala pese siva alofa filemu olioli fiafia faʻafetai manuia ola
oti maʻi alu sau savali tamoʻe nofo tū taʻoto moe ala inu fai faia vaʻai iloa faʻalogo tautala fetalai
saunoa tali fesili valaʻau faitau aʻoaʻo galue galuega fausia tufa aumai avatu ave tuʻu tago sasa tanu
totō tuli fagota taʻalo tagi ʻata fiu mafaufau talitonu tatalo viʻia fesoasoani puipui leoleo tausi
faʻasao faʻaola toe tau taunuʻu malaga folau lele aʻau lelei leaga umi puʻupuʻu mafanafana malulu fou
tuai matua talavou mamā palapala mālosi vaivai paʻepaʻe uliuli mumu samasama moni sese saʻo mamao
latalata vave pogisa mālūlū faʻamoemoe faʻamagalo agalelei amiotonu aoao faʻatau tupe maketi
faleoloa pasi uafu motu atumotu itumalo alalaupapa aso sā aso gafua tausamiga faʻaipoipoga maliu
faʻalavelave fono saofaʻi ʻava sua laulau umu saka fuifui lauʻulu faʻalupega tulāfale failauga
lauga fagogo tala fesootaʻiga aʻoaʻoga lesona faʻataʻitaʻiga siʻufofoga tautua taulaga taulealea
aualuma fetaui fetufaʻaʻi faʻasalalau pupuni faitotoʻa fanuatanu malumalu ʻupega lalaga ietoga
tapaʻau ʻie lavalava ofu seevae pulou mafuaʻaga faʻaiʻuga amataga ogatotonu tuaoi nofoaga
feʻau feʻausi fetalaiga vavega mālamalama faʻailoga sauniga taeaotalu faʻamanuiaga
""".split()

# Function words in (rough) order of frequency in running text: sentences draw them with Zipf weights.
PORTUGUESE_FUNCTION_WORDS = """
de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das tem à
seu sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era depois sem
mesmo aos ter seus quem nas me esse eles estão tinha foram essa num nem suas meu às minha numa pelos
elas havia seja qual será nós lhe deles essas esses pelas este fosse dele tu te vós vos lhes meus
minhas teu tua teus tuas nosso nossa nossos nossas dela delas esta estes estas aquele aquela aqueles
aquelas isto aquilo então assim ainda aqui ali lá sobre sob desde contra porque pois porém onde todo
toda todos todas outro outra outros outras tão tanto cada sempre nunca agora antes logo bem mal sim
cujo cuja uns umas dum duma quais nenhum nenhuma algum alguma alguns algumas tudo nada ninguém
""".split()

PORTUGUESE_CONTENT_WORDS = """
homem mulher menino menina filho filha pai mãe irmão irmã avô avó povo gente rei rainha senhor senhora
servo serva pastor profeta sacerdote juiz juízes soldado príncipe escravo amigo inimigo vizinho
estrangeiro viúva órfão criança jovem velho ancião discípulo apóstolo anjo espírito alma corpo coração
mão mãos pé pés olho olhos boca ouvido cabeça rosto sangue carne osso voz nome palavra palavras verdade
vida morte paz guerra fé esperança amor graça glória poder força sabedoria justiça juízo pecado perdão
lei mandamento aliança promessa bênção maldição caminho estrada porta casa cidade aldeia campo monte
montanha vale rio mar lago fonte poço deserto terra céu sol lua estrela estrelas nuvem chuva vento fogo
água pão vinho azeite mel leite trigo cevada fruto frutos árvore figueira videira vinha oliveira
semente colheita ovelha ovelhas cordeiro boi bois vaca cavalo jumento camelo leão lobo pomba peixe
ave aves pedra pedras ouro prata bronze ferro madeira templo altar tenda trono reino nação nações tribo
família geração dia dias noite noites manhã tarde hora tempo ano anos mês semana sábado festa jejum
oração cântico louvor salmo livro carta história princípio fim começo meio lado parte lugar mundo
mesa cama roupa vestido sandálias bolsa espada escudo arco flecha barco rede navio muro muralha torre
portão janela escada jardim pátio mercado moeda preço dívida trabalho obra obras sinal milagre visão
sonho medo alegria tristeza choro riso silêncio clamor grito cheiro sombra luz trevas fome sede
frio calor doença cura remédio
ser estar ter haver fazer dizer ir vir ver dar saber querer poder dever ficar passar deixar chegar
levar trazer tomar pôr sair entrar subir descer andar correr cair levantar sentar deitar dormir acordar
comer beber falar chamar responder perguntar ouvir escutar olhar achar buscar procurar encontrar perder
ganhar pagar comprar vender abrir fechar começar acabar voltar tornar seguir guardar servir amar
temer crer esperar lembrar esquecer conhecer entender ensinar aprender escrever ler cantar louvar
orar abençoar perdoar salvar ajudar curar morrer viver nascer crescer plantar colher semear edificar
construir destruir queimar lavar vestir mandar enviar receber pedir rogar chorar rir sofrer julgar
reinar vencer lutar fugir esconder mostrar contar chegou disse falou fez foi era estava havia tinha
veio viu deu sabia queria podia ficou passou deixou levou trouxe tomou saiu entrou subiu desceu
andou correu caiu levantou sentou dormiu comeu bebeu chamou respondeu ouviu olhou achou buscou
encontrou voltou seguiu guardou serviu amou temeu creu esperou conheceu ensinou escreveu cantou orou
abençoou salvou ajudou curou morreu viveu nasceu cresceu plantou edificou mandou enviou recebeu pediu
chorou julgou reinou venceu fugiu mostrou contou disseram fizeram foram vieram viram deram ficaram
saíram entraram subiram desceram comeram beberam ouviram voltaram seguiram serão seremos será farei
fará direi dirá irei irá virá verá darei dará saberá estará terá haverá vivo vivos morto mortos
grande grandes pequeno pequena novo nova velha bom boa bons boas mau má belo bela forte fraco rico
pobre santo santa justo justa sábio sábia fiel cheio cheia vazio alto alta baixo longe perto
primeiro primeira segundo terceiro último última inteiro verdadeiro falso puro limpo escuro claro
branco preto vermelho verde azul doce amargo quente frio seco molhado feliz triste cansado contente
sozinho juntos grandemente rapidamente devagar depressa somente apenas quase nunca jamais talvez
certamente verdadeiramente dois duas três quatro cinco seis sete oito nove dez onze doze vinte cem mil
Jerusalém Egito Babilônia Galileia Samaria Jordão Sião Abraão Isaque Jacó Moisés Davi Salomão Pedro
Paulo Maria José Tiago André Filipe Marta Sara Raquel Lia Ester Daniel Elias Eliseu Samuel Josué
coisa coisas homens mulheres filhos filhas pais irmãos povos reis cidades casas campos montes rios
mares terras céus ventos águas pedaço caminhos portas muros dias anos tempos vezes vez lugar lugares
momento verdade razão causa forma maneira modo sinal sinais fim começo fundo face face frente lado
costas braço braços dedo dedos joelho joelhos ombro ombros língua lábios dente dentes cabelo pele
vestes manto coroa cetro anel cálice taça vaso jarro cesto rede vela lâmpada candeia azeite incenso
ofertas sacrifício holocausto cordeiros carneiro touro bezerro cabrito pombas gafanhotos serpente
leões ursos feras animais gado rebanho pastagem erva relva flor flores folha folhas raiz ramo ramos
espinhos cardos areia pó cinza barro lama neve gelo orvalho tempestade trovão relâmpago terremoto
enchente seca estio inverno verão primavera outono aurora madrugada meia noite crepúsculo ocaso
nascente poente norte sul leste oeste oriente ocidente alto baixo dentro fora cima baixo diante
atrás junto perto longe além aquém através redor meio centro beira margem costa ilha praia porto
tem têm tinha tinham teve tiveram terá terão tenha tenham faz fazem fazia faziam fará farão faça
façam diz dizem dizia diziam dirão diga digam vai vão ia iam foi foram irá irão vá vem vêm vinha
vinham virão venha venham vê veem via viam veja vejam dá dão dava davam dará darão dê deem sabe
sabem sabia sabiam saberá saiba quer querem queria queriam quis quiseram pode podem podia podiam pôde
puderam poderá poderão possa possam deve devem devia deviam fica ficam ficava ficavam fique fiquem
passa passam passava passaram deixa deixam deixava deixaram chega chegam chegava chegaram leva levam
levava levaram traz trazem trazia trouxeram toma tomam tomava tomaram põe põem punha pôs puseram sai
saem saía saíam sairá entra entram entrava entrarão sobe sobem subia descem descia desceu andava
andaram corre correm corria caem caía levanta levantam levantava senta sentou dorme dormem dormia
come comem comia come bebe bebem bebia fala falam falava falaram falará chama chamam chamava chamaram
responde responderam pergunta perguntou perguntaram ouve ouvem ouvia escuta escutou olha olham olhava
acha achou busca buscou procura procurou encontra encontraram perde perdeu ganha ganhou paga pagou
compra comprou vende vendeu abre abriu abriram fecha fechou fecharam começa começou começaram acaba
acabou volta voltou tornou tornaram segue seguiam guarda guardou serve servia ama amava teme temia
crê cria creram espera esperava lembra lembrou esquece esqueceu conhece conheciam entende entendeu
ensina ensinava aprende aprendeu escreve escrito escrita lê leu canta cantava louva louvou ora orava
abençoa abençoe perdoa perdoou salva salvou ajuda ajudou cura curou morre morreram vive viviam nasce
nascido nascida cresce cresceram planta plantou colhe colheu semeia semeou edifica edificaram
constrói construiu destrói destruiu queima queimou lava lavou veste vestiu manda mandou envia
enviados recebe receberam pede pediram roga rogou chora choravam ri riu sofre sofreu julga julgará
reina reinará vence venceu luta lutou foge fugiram esconde escondeu mostra mostrou conta contou
criado criada feito feita dito dita visto vista dado dada posto posta aberto aberta fechado fechada
escolhido escolhida amado amada bendito bendita santificado glorificado louvado levantado derramado
separado separada chamado chamada enviado enviada nascido perdido achado guardado cumprido
alegre alegres grandes pequenos pequenas novos novas velhos velhas bons boas maus más belos belas
fortes fracos ricos pobres santos santas justos justas sábios fiéis cheios vazios altos baixos
primeiros últimos inteira verdadeira falsa pura limpa escura clara branca preta vermelha verde
azul doce amarga quente fria seca molhada felizes tristes cansada contente sozinha juntas eterno
eterna eternos antigo antiga antigos novo jovem jovens poderoso poderosa misericordioso fiel vivo
viva mortos morta santo cego cegos surdo mudo coxo leproso enfermo enfermos sãos inteiro
""".split()

# %% [markdown]
# ## Text normalization and vocabularies

# %%


def normalize_text(text: str, lang: str) -> str:
    """The training/eval target: NFC, lower case, punctuation turned into word breaks, okina
    look-alikes unified to U+02BB in Samoan; letters with macrons and diacritics are kept."""
    text = unicodedata.normalize("NFC", text).lower()
    if lang == "smo":
        for variant in OKINA_VARIANTS:
            text = text.replace(variant, OKINA)
    kept = [ch if ch == OKINA or unicodedata.category(ch)[0] in "LN" else " " for ch in text]
    return " ".join("".join(kept).split())


def language_vocab(alphabet: str) -> dict[str, int]:
    """MMS-style character vocabulary: blank ``<pad>`` = 0, ``<s>``, ``</s>``, ``<unk>``, ``|``, then
    the alphabet's characters in code point order."""
    tokens = [*SPECIAL_TOKENS, WORD_DELIMITER, *sorted(set(alphabet))]
    return {token: index for index, token in enumerate(tokens)}


def nested_vocab(langs: Iterable[str], joint: bool = False) -> dict[str, dict[str, int]]:
    """``{"smo": {...}, "por": {...}}`` as MMS ships it; ``joint`` adds the union ``mul``."""
    langs = list(langs)
    vocab = {lang: language_vocab(LANGUAGES[lang].alphabet) for lang in langs}
    if joint:
        vocab[JOINT_LANG] = language_vocab("".join(LANGUAGES[lang].alphabet for lang in langs))
    return vocab


# %% [markdown]
# ## Training texts

# %%


def samoan_pseudo_word(rng: np.random.Generator) -> str:
    """A word of (C)V syllables in Samoan spelling, sometimes with a reduplicated stem."""
    consonants = "tlsmfgnvpʻhkr"
    weights = np.array([14, 14, 11, 10, 10, 8, 7, 7, 6, 6, 1.2, 1, 0.8])
    vowels = "aeiou"
    long_vowels = dict(zip(vowels, "āēīōū"))

    def syllable(first: bool) -> str:
        onset = "" if rng.random() < (0.35 if first else 0.15) else str(rng.choice(list(consonants), p=weights / weights.sum()))
        if onset == OKINA and first:
            onset = ""  # word-initial okinas are not spoken by the demo's voice
        vowel = str(rng.choice(list(vowels), p=[0.34, 0.16, 0.18, 0.16, 0.16]))
        if rng.random() < 0.07:
            vowel = long_vowels[vowel]
        return onset + vowel

    n = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.06, 0.3, 0.3, 0.2, 0.1, 0.04]))
    word = "".join(syllable(i == 0) for i in range(n))
    roll = rng.random()
    if roll < 0.08:
        word = word + word  # full reduplication: malamalama, pouliuli
    elif roll < 0.16 and n >= 2:
        prefix = "faʻa" if rng.random() < 0.6 else "fe"
        word = prefix + word
    return word


_PT_ONSETS = [
    ("b", 4), ("c", 5), ("d", 7), ("f", 3), ("g", 3), ("j", 2), ("l", 6), ("m", 7), ("n", 4),
    ("p", 6), ("r", 5), ("s", 7), ("t", 7), ("v", 5), ("x", 1), ("z", 1), ("ch", 2), ("br", 1.5),
    ("cr", 1.5), ("dr", 1), ("fr", 1.5), ("gr", 1.5), ("pr", 3), ("tr", 2.5), ("bl", 0.5), ("cl", 1),
    ("fl", 1), ("pl", 1), ("qu", 2), ("gu", 1),
]  # fmt: skip
_PT_INITIAL_ONSETS = [("", 14), ("h", 1)]
_PT_MEDIAL_ONSETS = [("", 2), ("lh", 1.5), ("nh", 1.5), ("rr", 1.5), ("ss", 2), ("ç", 1.5)]
_PT_VOWELS = [("a", 10), ("e", 8), ("i", 6), ("o", 8), ("u", 3), ("ei", 0.8), ("ou", 0.6), ("ai", 0.6),
              ("oi", 0.4), ("au", 0.3), ("io", 0.4), ("ia", 0.6)]  # fmt: skip
_PT_STRESSED = {"a": "áâã", "e": "éê", "i": "í", "o": "óôõ", "u": "ú"}
_PT_CODAS = [("", 30), ("r", 4), ("s", 4), ("l", 2), ("n", 2)]
_PT_ENDINGS = [
    ("", 25), ("ção", 3), ("ções", 1.5), ("são", 1), ("dade", 2), ("mente", 2), ("ão", 3), ("ões", 1.5),
    ("ar", 3), ("er", 2), ("ir", 2), ("ado", 2), ("ada", 2), ("ido", 1.5), ("ida", 1.5), ("eiro", 1),
    ("eira", 1), ("oso", 1), ("osa", 1), ("inho", 1), ("inha", 1), ("agem", 1), ("ença", 1), ("ância", 0.5),
    ("ível", 0.5), ("ês", 0.5), ("al", 1), ("el", 1), ("ou", 1.5), ("am", 2), ("em", 2), ("iam", 1),
    ("avam", 1), ("aram", 1.5), ("eram", 1), ("ará", 1), ("erá", 1), ("ei", 1), ("ia", 1.5), ("es", 2),
    ("os", 3), ("as", 3), ("o", 6), ("a", 6), ("e", 4), ("um", 0.5), ("im", 0.5), ("ém", 0.5), ("az", 0.3),
]  # fmt: skip


def _pick(rng: np.random.Generator, table: Sequence[tuple[str, float]]) -> str:
    weights = np.array([w for _, w in table], dtype=float)
    return table[int(rng.choice(len(table), p=weights / weights.sum()))][0]


def _pt_fix_spelling(onset: str, vowel: str, rng: np.random.Generator) -> str:
    """Keep c/ç/qu/gu spellings as Portuguese writes them before front and back vowels."""
    front = vowel[:1] in "eéêií"
    if onset == "c" and front:
        return "qu" if rng.random() < 0.5 else "c"
    if onset == "ç" and front:
        return "c"
    if onset in ("qu", "gu") and not front and vowel[:1] != "a":
        return "c" if onset == "qu" else "g"
    return onset


def portuguese_pseudo_word(rng: np.random.Generator) -> str:
    """A word in Portuguese spelling: syllables from Portuguese onsets, nuclei and codas, one
    stressed (accented) vowel at most, and a common Portuguese ending."""
    n = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.4, 0.33, 0.12]))
    accent_at = int(rng.integers(n)) if rng.random() < 0.35 else -1
    parts = []
    for i in range(n):
        table = _PT_ONSETS + _PT_INITIAL_ONSETS if i == 0 else _PT_ONSETS + _PT_MEDIAL_ONSETS
        vowel = _pick(rng, _PT_VOWELS)
        if i == accent_at:
            options = _PT_STRESSED[vowel[0]]
            vowel = options[int(rng.integers(len(options)))] + vowel[1:]
            if vowel[0] in "ãõ":
                vowel = vowel[0] + ("o" if vowel[0] == "ã" else "e")
        onset = _pt_fix_spelling(_pick(rng, table), vowel, rng)
        coda = _pick(rng, _PT_CODAS) if i < n - 1 else ""
        parts.append(onset + vowel + coda)
    ending = _pick(rng, _PT_ENDINGS)
    word = "".join(parts)
    if ending[:1] in "aeiouáéíóú" and ending and word[-1] in "aeiou":
        word = word[:-1]  # stem + ending: cas + inha
    if ending and any(ch in word for ch in "áàâãéêíóôõú") and any(ch in ending for ch in "áàâãéêíóôõú"):
        ending = ""
    return word + ending


PSEUDO_WORD: dict[str, Callable[[np.random.Generator], str]] = {
    "smo": samoan_pseudo_word,
    "por": portuguese_pseudo_word,
}
WORD_LISTS = {
    "smo": (SAMOAN_FUNCTION_WORDS, SAMOAN_CONTENT_WORDS),
    "por": (PORTUGUESE_FUNCTION_WORDS, PORTUGUESE_CONTENT_WORDS),
}
# Share of function words, listed content words and pseudo-words in a sentence.
# Portuguese spelling is not phonemic: pseudo-words there teach mostly that spelling is random.
WORD_KIND_P = {"smo": (0.45, 0.33, 0.22), "por": (0.47, 0.45, 0.08)}


def _zipf(n: int) -> np.ndarray:
    """Weights of the words of a frequency-ordered list: running text uses a few of them a lot."""
    weights = 1.0 / (np.arange(n) + 2.0)
    return weights / weights.sum()


def random_sentence(lang: str, rng: np.random.Generator) -> str:
    """A sentence of 2-18 words with commas/semicolons/colons where espeak-ng then pauses."""
    function_words, content_words = WORD_LISTS[lang]
    n_words = int(np.clip(rng.gamma(3.0, 2.8), 2, 18))
    words = []
    for _ in range(n_words):
        kind = int(rng.choice(3, p=WORD_KIND_P[lang]))
        if kind == 0:
            word = function_words[int(rng.choice(len(function_words), p=_zipf(len(function_words))))]
        elif kind == 1:
            word = content_words[int(rng.integers(len(content_words)))]
        else:
            word = PSEUDO_WORD[lang](rng)
            if rng.random() < 0.1:
                word = word.capitalize()  # a name
        words.append(word)
    text = ""
    for i, word in enumerate(words):
        text += word if i == 0 else " " + word
        if 0 < i < n_words - 1:
            roll = rng.random()
            if roll < 0.08:
                text += ","
            elif roll < 0.10:
                text += ";"
            elif roll < 0.11:
                text += ":"
    text = text[0].upper() + text[1:]
    return text + ("?" if rng.random() < 0.08 else ".")


# How often scripture narrative uses its commonest words (per 100 words, roughly, in Portuguese
# Bible prose: "E disse ..., e ..."); random_sentence's Zipf weights make "e" five times rarer.
NARRATIVE_WORDS = {
    "por": {"e": 7.0, "de": 4.5, "o": 4.0, "a": 4.0, "que": 3.0, "os": 2.0, "as": 1.5, "do": 1.5, "da": 1.5,
            "se": 1.2, "em": 1.2, "para": 1.0, "não": 1.0, "com": 1.0, "ao": 0.8, "à": 0.6, "às": 0.3,
            "dos": 0.8, "das": 0.8, "um": 0.8, "uma": 0.8, "no": 0.8, "na": 0.8, "nos": 0.5, "nas": 0.4,
            "seu": 0.6, "sua": 0.6, "seus": 0.4, "suas": 0.3, "lhe": 0.5, "ele": 0.6, "ela": 0.4, "eles": 0.4,
            "foi": 0.5, "era": 0.5, "disse": 0.5, "assim": 0.3, "todo": 0.3, "todos": 0.3, "me": 0.3,
            "te": 0.3, "meu": 0.3, "tua": 0.2, "teu": 0.2, "quem": 0.2, "porque": 0.2, "pelo": 0.2,
            "pela": 0.2, "entre": 0.2, "sobre": 0.3, "então": 0.3, "ali": 0.2, "havia": 0.2, "estava": 0.2},
}


# Content words that scripture prose uses much more than everyday text (typed for this model).
NARRATIVE_CONTENT = {
    "por": """
Senhor Deus disse terra filhos filho povo rei casa dia dias homem homens mão mãos coração pai pais nome
cidade Israel Jerusalém palavra palavras céus céu águas água luz trevas noite tarde manhã mar monte servo
servos sacerdote profeta mulher mulheres irmãos vida morte pecado glória santo lei caminho vinho pão fogo
espírito alma carne sangue ouro prata gado ovelhas campo campos vale rio deserto tenda altar templo trono
reino nações nação tribo família geração anos ano primeiro segundo terceiro sete doze quarenta mil grande
grandes disseram fez fizeram foi foram era eram viu viram veio vieram deu deram tomou tomaram saiu saíram
entrou entraram chamou chamaram respondeu ouviu ouviram falou falaram mandou criou houve haja seja sejam
será serão estava estavam havia tinha tinham morreu nasceu gerou edificou guardará dará fará dirá virá
subiu desceu levantou levantaram habitou ficou ficaram voltou voltaram andou seguiu serviram amou temeu
creu conheceu abençoou bendito misericórdia justiça verdade paz salvação graça poder força juízo aliança
""".split(),
}


def narrative_sentence(lang: str, rng: np.random.Generator) -> str:
    """Scripture-style prose: 1-4 clauses chained with "e" (after a comma, a semicolon or none),
    the commonest words at their narrative frequency, listed content words, few pseudo-words."""
    if lang not in NARRATIVE_WORDS:
        return random_sentence(lang, rng)
    frequent = NARRATIVE_WORDS[lang]
    frequent_words, frequent_p = list(frequent), np.array(list(frequent.values()))
    frequent_p = frequent_p / frequent_p.sum()
    function_words, content_words = WORD_LISTS[lang]
    clauses = []
    for i in range(int(rng.integers(1, 5))):
        words = []
        for _ in range(int(rng.integers(2, 9))):
            roll = rng.random()
            # Scripture's own content words get a third of the words: a character model learns a
            # word's spelling (luz, not lus; águas, not aguas) only from hearing it often.
            if roll < 0.40:
                words.append(frequent_words[int(rng.choice(len(frequent_words), p=frequent_p))])
            elif roll < 0.45:
                words.append(function_words[int(rng.integers(len(function_words)))])
            elif roll < 0.80 and lang in NARRATIVE_CONTENT:
                scripture = NARRATIVE_CONTENT[lang]
                words.append(scripture[int(rng.integers(len(scripture)))])
            elif roll < 0.97:
                words.append(content_words[int(rng.integers(len(content_words)))])
            else:
                words.append(PSEUDO_WORD[lang](rng))
        if i > 0 or rng.random() < 0.5:
            words.insert(0, "e")
        clauses.append(" ".join(words))
    text = clauses[0]
    for clause in clauses[1:]:
        text += str(rng.choice([", ", "; ", " ", ": "], p=[0.45, 0.3, 0.2, 0.05])) + clause
    return text[0].upper() + text[1:] + ("?" if rng.random() < 0.05 else ".")


def demo_ngrams(demo_root: Path, lang: str, n: int = 4) -> set[tuple[str, ...]]:
    """Every word n-gram of the demo chapters' verses and headings (normalized): training
    sentences containing one of them are rejected."""
    grams: set[tuple[str, ...]] = set()
    for path in sorted((demo_root / LANGUAGES[lang].name / "truth").glob("*.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        for text in [truth["heading"]["text"], *(v["text"] for v in truth["verses"])]:
            words = normalize_text(text, lang).split()
            grams.update(tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))
    return grams


def overlaps_demo(sentence: str, lang: str, banned: set[tuple[str, ...]], n: int = 4) -> bool:
    words = normalize_text(sentence, lang).split()
    return any(tuple(words[i : i + n]) in banned for i in range(max(1, len(words) - n + 1)))


# %% [markdown]
# ## Utterances: several sentences, natural pauses, the demo's noise floor and codecs

# %%

SPEED_WPM = (115, 205)  # the demo reads at 130-177 wpm
PITCH = (30, 72)  # espeak's -p (default 50)
SENTENCE_PAUSE_S = (0.2, 1.5)
EDGE_SILENCE_S = (0.1, 1.5)
MAX_UTTERANCE_S = 25.0
NOISE_RMS_DBFS = (-68.0, -60.0)  # the demo: -65
PEAK_DBFS = (-6.0, -1.0)  # the demo: -3
# Stored as the demo stores chapters (then decoded with tala.audio.convert, as the workflow does).
CODECS = (("wav", None, 0.55), ("mp3", "64k", 0.15), ("mp3", "96k", 0.15), ("mp4", "48k", 0.15))


@dataclass(frozen=True)
class UtterancePlan:
    lang: str
    sentences: tuple[str, ...]
    speed_wpm: int
    pitch: int
    pauses_s: tuple[float, ...]  # between sentences
    lead_s: float
    trail_s: float
    peak_dbfs: float
    noise_dbfs: float
    codec: str  # "wav", "mp3", "mp4"
    bitrate: str | None
    noise_seed: int

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def utterance_rng(seed: int, lang: str, split: str, index: int) -> np.random.Generator:
    """One stream per utterance, so the corpus does not depend on how many workers made it."""
    return np.random.default_rng([seed, zlib.crc32(f"{lang}/{split}".encode()), index])


def plan_utterance(lang: str, rng: np.random.Generator, banned: set[tuple[str, ...]],
                   sentence: Callable[[str, np.random.Generator], str] | None = None) -> UtterancePlan:
    """1-3 sentences mostly, 4-7 for a long one (10-25 s); rough length from the word count.
    ``sentence`` makes the sentences (default :func:`random_sentence`)."""
    sentence_source = sentence or random_sentence
    speed = int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1))
    n_sentences = int(rng.choice([1, 2, 3, 5, 7], p=[0.3, 0.3, 0.2, 0.12, 0.08]))
    sentences: list[str] = []
    words = 0
    budget_words = (MAX_UTTERANCE_S - 3.0) * speed / 60.0 * 0.85
    while len(sentences) < n_sentences:
        text = sentence_source(lang, rng)
        if overlaps_demo(text, lang, banned):
            continue
        n = len(text.split())
        if sentences and words + n > budget_words:
            break
        sentences.append(text)
        words += n
    codec_index = int(rng.choice(len(CODECS), p=[p for *_, p in CODECS]))
    return UtterancePlan(
        lang=lang,
        sentences=tuple(sentences),
        speed_wpm=speed,
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        pauses_s=tuple(float(rng.uniform(*SENTENCE_PAUSE_S)) for _ in sentences[1:]),
        lead_s=float(rng.uniform(*EDGE_SILENCE_S)),
        trail_s=float(rng.uniform(*EDGE_SILENCE_S)),
        peak_dbfs=float(rng.uniform(*PEAK_DBFS)),
        noise_dbfs=float(rng.uniform(*NOISE_RMS_DBFS)),
        codec=CODECS[codec_index][0],
        bitrate=CODECS[codec_index][1],
        noise_seed=int(rng.integers(2**31)),
    )


def plan_easy_utterance(lang: str, rng: np.random.Generator, banned: set[tuple[str, ...]]) -> UtterancePlan:
    """A curriculum utterance: one short sentence of listed words (no pseudo-words), little
    silence, moderate speed and pitch, no codec. A CTC model from scratch first learns here to
    tell letters apart; on the full data it stays on the all-blank plateau for thousands of steps."""
    function_words, content_words = WORD_LISTS[lang]
    while True:
        words = [function_words[int(rng.choice(len(function_words), p=_zipf(len(function_words))))]
                 if rng.random() < 0.45
                 else content_words[int(rng.integers(len(content_words)))]
                 for _ in range(int(rng.integers(2, 7)))]  # fmt: skip
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + "."
        if not overlaps_demo(sentence, lang, banned):
            break
    return UtterancePlan(
        lang=lang, sentences=(sentence,), speed_wpm=int(rng.integers(140, 186)), pitch=int(rng.integers(40, 61)),
        pauses_s=(), lead_s=float(rng.uniform(0.05, 0.3)), trail_s=float(rng.uniform(0.05, 0.3)), peak_dbfs=-3.0,
        noise_dbfs=-65.0, codec="wav", bitrate=None, noise_seed=int(rng.integers(2**31)),
    )  # fmt: skip


def render_master(plan: UtterancePlan, synth: Callable[..., np.ndarray] | None = None) -> np.ndarray:
    """The utterance at espeak-ng's 22.05 kHz, built like a demo chapter: each sentence trimmed
    and tapered, seeded pauses, peak normalization, white noise floor."""
    from tala.demo import corpus as dc

    synth = synth or dc.synthesize
    rate = dc.MASTER_RATE_HZ
    voice = LANGUAGES[plan.lang].voice
    pieces = [np.zeros(int(plan.lead_s * rate), np.float32)]
    for i, sentence in enumerate(plan.sentences):
        if i:
            pieces.append(np.zeros(int(plan.pauses_s[i - 1] * rate), np.float32))
        speech = synth(sentence, voice, plan.speed_wpm, plan.pitch)
        pieces.append(dc.taper_edges(dc.trim_silence(speech)[0]))
    pieces.append(np.zeros(int(plan.trail_s * rate), np.float32))
    joined = np.concatenate(pieces)
    master = joined * np.float32(10.0 ** (plan.peak_dbfs / 20.0) / float(np.max(np.abs(joined))))
    noise = np.random.default_rng(plan.noise_seed).standard_normal(len(master)) * 10.0 ** (plan.noise_dbfs / 20.0)
    return (master + noise).astype(np.float32)


def render_clip(plan: UtterancePlan, clip: Path) -> float:
    """Write the utterance as 16 kHz mono PCM16 WAV at ``clip``, through the planned codec and
    ``tala.audio.convert`` when it is a lossy one; returns the duration in seconds."""
    from tala.demo import corpus as dc
    from tala.audio.convert import convert_file

    master = render_master(plan)
    if plan.codec == "wav":
        audio = soxr.resample(master, dc.MASTER_RATE_HZ, SAMPLE_RATE).astype(np.float32)
        with atomic_path(clip) as tmp:
            sf.write(tmp, np.clip(audio, -1, 1), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        return len(audio) / SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="tala-demo-model-") as tmp_dir:
        coded = Path(tmp_dir) / f"utt.{plan.codec}"
        fmt = dc.AudioFormat(plan.codec, plan.bitrate)
        dc.write_audio(master, fmt, coded, np.random.default_rng(plan.noise_seed))
        return convert_file(coded, clip, progress=False).duration_s


def _make_one(job: tuple[int, str, str, int, str, Path]) -> dict:
    seed, lang, split, index, _, clip_dir = job
    rng, banned = utterance_rng(seed, lang, split, index), _BANNED[lang]
    if split == "easy":
        plan = plan_easy_utterance(lang, rng, banned)
    elif split == "narrative":
        plan = plan_utterance(lang, rng, banned, sentence=narrative_sentence)
    else:
        plan = plan_utterance(lang, rng, banned)
    clip = clip_dir / f"{split}-{index:06d}.wav"
    duration = render_clip(plan, clip)
    return {
        "audio": f"clips/{clip.name}",
        "text": normalize_text(plan.text, lang),
        "duration": round(duration, 4),
        "source_text": plan.text,
        "speed_wpm": plan.speed_wpm,
        "pitch": plan.pitch,
        "codec": plan.codec if plan.bitrate is None else f"{plan.codec}-{plan.bitrate}",
    }


_BANNED: dict[str, set[tuple[str, ...]]] = {}


def _init_worker(banned: dict[str, set[tuple[str, ...]]]) -> None:
    global _BANNED
    _BANNED = banned
    # Each worker synthesizes on one core; torch is not used here.
    os.environ["OMP_NUM_THREADS"] = "1"


def synthesize_split(out: Path, lang: str, split: str, count: int, seed: int, workers: int,
                     demo_root: Path = DEMO_ROOT) -> Path:
    """Synthesize ``count`` utterances into ``out/clips`` and write ``out/<split>.jsonl`` (the HF
    "json" dataset layout: audio path relative to the manifest, normalized text, duration)."""
    from tqdm import tqdm

    manifest = out / f"{split}.jsonl"
    if manifest.exists() and len(read_jsonl(manifest)) == count:
        return manifest
    clip_dir = out / "clips"
    clip_dir.mkdir(parents=True, exist_ok=True)
    banned = {lang: demo_ngrams(demo_root, lang)}
    jobs = [(seed, lang, split, i, str(out), clip_dir) for i in range(count)]
    started = time.perf_counter()
    bar = tqdm(total=count, desc=f"synthesize {lang}/{split}", unit="utt", file=sys.stderr, mininterval=5.0)
    records = []
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(banned,)) as pool:
            for record in pool.imap(_make_one, jobs, chunksize=8):
                records.append(record)
                bar.update()
    else:
        _init_worker(banned)
        for job in jobs:
            records.append(_make_one(job))
            bar.update()
    bar.close()
    write_json_atomic(out / f"{split}.stats.json", {
        "utterances": count, "seconds": round(sum(r["duration"] for r in records), 1),
        "synthesis_wall_s": round(time.perf_counter() - started, 1), "workers": workers, "seed": seed,
        "voice": LANGUAGES[lang].voice,
    })  # fmt: skip
    write_text_atomic(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return manifest


# %% [markdown]
# ## The model: MMS's shape, scaled down

# %%


def demo_config(vocab_size: int, adapter_dim: int = 16) -> dict:
    """A ~2 M parameter wav2vec2 with MMS's layout: stable layer norm (pre-LN transformer, layer
    norm in every conv layer), attention adapters in every layer, the standard 7-layer CNN
    (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 320 samples = 20 ms per frame) at 64 channels.
    No SpecAugment-style masking and no dropout: the synthesized data is clean and the model small."""
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config(
        vocab_size=vocab_size,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=768,
        hidden_act="gelu",
        conv_dim=(64,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        adapter_attn_dim=adapter_dim,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return config.to_dict()


# %% [markdown]
# ## The recipe

# %%


@dataclass(frozen=True)
class Recipe:
    """What ``make demo-model`` runs. Steps, not minutes, so that the result is reproducible;
    the times in the model card are what the recorded run took on 2 CPU cores."""

    # Portuguese gets more: its spelling has to be learned word by word, Samoan's is phonemic.
    train_utterances: tuple[tuple[str, int], ...] = (("smo", 2000), ("por", 3000))
    valid_utterances: int = 48  # per language
    easy_utterances: int = 2000  # per language: the curriculum's short sentences
    easy_steps: int = 700
    easy_lr: float = 2e-3
    easy_warmup: int = 150
    base_steps: int = 3000
    base_lr: float = 1.5e-3
    base_warmup: int = 100
    # Portuguese also gets scripture-style prose ("E disse ..., e ..."): its commonest word, "e",
    # is read [i], and the base still writes it "i" or glues it to the next word.
    narrative_utterances: tuple[tuple[str, int], ...] = (("por", 4000),)
    scripture_steps: int = 3600
    scripture_lr: float = 8e-4
    scripture_warmup: int = 50
    # A second pass over the same data at a lower peak lr, in another order: the first pass sees
    # each utterance about once, and its valid CER was still falling when its lr ran out.
    scripture2_steps: int = 3000
    scripture2_lr: float = 4e-4
    adapter_steps: tuple[tuple[str, int], ...] = (("smo", 300), ("por", 600))
    adapter_lr: float = 1e-3
    adapter_warmup: int = 30
    # Small batches: many updates per CPU minute, which is what gets CTC off its all-blank plateau.
    batch_seconds: float = 24.0
    max_batch_size: int = 8
    easy_max_batch_size: int = 16
    adapter_dim: int = 16


def easy_settings(recipe: Recipe, seed: int) -> "TrainSettings":
    from tala.finetune.train_ctc import TrainSettings

    # The lr ends at a quarter of its peak: the base stage goes on from here with its own warm-up.
    return TrainSettings(phase="all", max_steps=recipe.easy_steps, learning_rate=recipe.easy_lr,
                         warmup_steps=recipe.easy_warmup, schedule="cosine", min_lr_ratio=0.25,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.easy_max_batch_size, seed=seed,
                         eval_every=0, checkpoint_every=100, log_every=25)  # fmt: skip


def base_settings(recipe: Recipe, seed: int) -> "TrainSettings":
    from tala.finetune.train_ctc import TrainSettings

    return TrainSettings(phase="all", max_steps=recipe.base_steps, learning_rate=recipe.base_lr,
                         warmup_steps=recipe.base_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size, seed=seed,
                         eval_every=250, checkpoint_every=100, log_every=25)  # fmt: skip


def scripture_settings(recipe: Recipe, seed: int, second: bool = False) -> "TrainSettings":
    """The scripture stage's first pass, or (``second``) its second pass: a lower peak lr and
    another data order (the seed + 1)."""
    from tala.finetune.train_ctc import TrainSettings

    steps, lr = ((recipe.scripture2_steps, recipe.scripture2_lr) if second
                 else (recipe.scripture_steps, recipe.scripture_lr))
    return TrainSettings(phase="all", max_steps=steps, learning_rate=lr,
                         warmup_steps=recipe.scripture_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size,
                         seed=seed + 1 if second else seed, eval_every=250, checkpoint_every=100,
                         log_every=25)  # fmt: skip


def adapter_settings(recipe: Recipe, seed: int, lang: str) -> "TrainSettings":
    from tala.finetune.train_ctc import TrainSettings

    return TrainSettings(phase="adapter", max_steps=dict(recipe.adapter_steps)[lang], learning_rate=recipe.adapter_lr,
                         warmup_steps=recipe.adapter_warmup, schedule="cosine", min_lr_ratio=0.02,
                         batch_seconds=recipe.batch_seconds, max_batch_size=recipe.max_batch_size, seed=seed,
                         eval_every=100, checkpoint_every=50, log_every=25, head_init="copy")  # fmt: skip


def stage_data(work: Path, recipe: Recipe, seed: int, workers: int) -> dict[str, dict[str, Path]]:
    manifests: dict[str, dict[str, Path]] = {}
    for lang in LANGUAGES:
        out = work / "data" / lang
        manifests[lang] = {
            "valid": synthesize_split(out, lang, "valid", recipe.valid_utterances, seed, workers),
            "easy": synthesize_split(out, lang, "easy", recipe.easy_utterances, seed, workers),
            "train": synthesize_split(out, lang, "train", dict(recipe.train_utterances)[lang], seed, workers),
        }
        if lang in dict(recipe.narrative_utterances):
            count = dict(recipe.narrative_utterances)[lang]
            manifests[lang]["narrative"] = synthesize_split(out, lang, "narrative", count, seed, workers)
    return manifests


def stage_easy(work: Path, manifests: dict, recipe: Recipe, seed: int) -> Path:
    """From random weights, all parameters, both languages, joint vocabulary ``mul``: the
    curriculum's short sentences of listed words."""
    from tala.finetune.train_ctc import train

    out = work / "models" / "easy"
    if (out / "model.safetensors").exists():
        return out
    spec = work / "models" / "spec"
    vocab = nested_vocab(LANGUAGES, joint=True)
    write_json_atomic(spec / "config.json", demo_config(len(vocab[JOINT_LANG]), recipe.adapter_dim))
    write_json_atomic(spec / "vocab.json", vocab)
    train([manifests[lang]["easy"] for lang in LANGUAGES], out, JOINT_LANG, easy_settings(recipe, seed),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], config=spec / "config.json",
          vocab_file=spec / "vocab.json")  # fmt: skip
    return out


def stage_base(work: Path, easy: Path, manifests: dict, recipe: Recipe, seed: int) -> Path:
    """All parameters on the full data of both languages, on from the curriculum stage."""
    from tala.finetune.train_ctc import train

    out = work / "models" / "base"
    if (out / "model.safetensors").exists():
        return out
    train([manifests[lang]["train"] for lang in LANGUAGES], out, JOINT_LANG, base_settings(recipe, seed),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], model=str(easy))  # fmt: skip
    return out


def stage_scripture(work: Path, start: Path, manifests: dict, recipe: Recipe, seed: int, second: bool = False) -> Path:
    """All parameters again, on the full data plus the Portuguese narrative prose (the base still
    misspelled the commonest words of scripture); Samoan stays in the mix so the base keeps it.
    ``second``: the second pass, on from the first."""
    from tala.finetune.train_ctc import train

    out = work / "models" / ("scripture-2" if second else "scripture")
    if (out / "model.safetensors").exists():
        return out
    sources = [manifests[lang][split] for lang in LANGUAGES for split in ("train", "narrative")
               if split in manifests[lang]]  # fmt: skip
    train(sources, out, JOINT_LANG, scripture_settings(recipe, seed, second),
          valid_manifests=[manifests[lang]["valid"] for lang in LANGUAGES], model=str(start))  # fmt: skip
    return out


def stage_adapter(work: Path, base: Path, manifests: dict, lang: str, recipe: Recipe, seed: int) -> Path:
    """The language's adapter layers and lm_head on the frozen base; the head starts from the
    joint head's rows of the language's characters."""
    from tala.finetune.train_ctc import train

    out = work / "models" / lang
    if (out / f"adapter.{lang}.safetensors").exists():
        return out
    sources = [manifests[lang][split] for split in ("train", "narrative") if split in manifests[lang]]
    train(sources, out, lang, adapter_settings(recipe, seed, lang), valid_manifests=[manifests[lang]["valid"]],
          model=str(base))  # fmt: skip
    return out


# %% [markdown]
# ## Evaluation on the demo chapters
#
# As the workflow will read them: each chapter converted to 16 kHz mono with ``tala.audio.convert``, the
# model loaded with ``from_pretrained`` + ``load_adapter``, greedy CTC decoding. Two ways of cutting
# the chapter: 30 s windows with 2 s of context on each side (the transcribe step's way), and
# plain consecutive 30 s windows. Characters are assigned to verses by their frame time (cuts in
# the middle of each pause; the spoken heading before the first verse is left out), and the CER
# per chapter counts all verses' edits over all verses' characters.

# %%

FRAME_S = 0.02  # 320 samples at 16 kHz
WINDOW_S = 30.0
CONTEXT_S = 2.0


def load_demo_model(folder: str | Path, lang: str):
    """``(model, processor)`` the way the transcribe step loads an MMS model."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    model = Wav2Vec2ForCTC.from_pretrained(str(folder))
    model.load_adapter(lang)
    processor = Wav2Vec2Processor.from_pretrained(str(folder))
    processor.tokenizer.set_target_lang(lang)
    model.eval()
    return model, processor


def window_logits(model, feature_extractor, samples: np.ndarray) -> "torch.Tensor":
    import torch

    inputs = feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
    with torch.inference_mode():
        return model(**inputs).logits[0].float()


def chapter_logits(model, feature_extractor, samples: np.ndarray, window_s: float = WINDOW_S,
                   context_s: float = CONTEXT_S) -> list[tuple[float, "torch.Tensor"]]:
    """``(start time, logits)`` per window core: each core of ``window_s`` is run with up to
    ``context_s`` of audio on each side, and only the core's frames are kept."""
    total = len(samples)
    core, context = int(window_s * SAMPLE_RATE), int(context_s * SAMPLE_RATE)
    pieces = []
    for core_start in range(0, total, core):
        core_end = min(total, core_start + core)
        lo, hi = max(0, core_start - context), min(total, core_end + context)
        logits = window_logits(model, feature_extractor, samples[lo:hi])
        first = int(round((core_start - lo) / SAMPLE_RATE / FRAME_S))
        last = min(len(logits), int(round((core_end - lo) / SAMPLE_RATE / FRAME_S)))
        pieces.append((core_start / SAMPLE_RATE, logits[first:last]))
    return pieces


def decode_timed(pieces: Sequence[tuple[float, "torch.Tensor"]], id_to_token: dict[int, str],
                 blank_id: int) -> list[tuple[str, float]]:
    """Greedy CTC over the windows: (character, time) with ``|`` as a space; repeats are merged
    within a window only (a window edge starts a new token)."""
    chars = []
    for start_s, logits in pieces:
        best = logits.argmax(dim=-1).tolist()
        previous = None
        for frame, token_id in enumerate(best):
            if token_id != previous and token_id != blank_id:
                token = id_to_token.get(token_id, "")
                if token not in SPECIAL_TOKENS:
                    chars.append((" " if token == WORD_DELIMITER else token, start_s + frame * FRAME_S))
            previous = token_id
        chars.append((" ", start_s + len(best) * FRAME_S))  # a window edge is no word
    return chars


def verse_hypotheses(chars: Sequence[tuple[str, float]], truth: dict) -> list[str]:
    """The decoded text of each verse: characters between the middles of the surrounding pauses."""
    verses = truth["verses"]
    cuts = [(truth["heading"]["end"] + verses[0]["start"]) / 2]
    cuts += [(a["end"] + b["start"]) / 2 for a, b in zip(verses, verses[1:])]
    cuts.append(float("inf"))
    texts = []
    for lo, hi in zip(cuts, cuts[1:]):
        texts.append(" ".join("".join(ch for ch, t in chars if lo <= t < hi).split()))
    return texts


def chapter_wav(demo_root: Path, lang: str, rec: str, cache: Path) -> Path:
    from tala.audio.convert import convert_file

    truth = json.loads((demo_root / LANGUAGES[lang].name / "truth" / f"{rec}.json").read_text(encoding="utf-8"))
    wav = cache / LANGUAGES[lang].name / f"{rec}.wav"
    if not wav.exists():
        convert_file(demo_root / LANGUAGES[lang].name / truth["audio"], wav, progress=False)
    return wav


def score_chapter(model, processor, lang: str, wav: Path, truth: dict, window_s: float = WINDOW_S,
                  context_s: float = CONTEXT_S) -> dict:
    """Greedy CER of one chapter's verses (jiwer: edits over reference characters)."""
    import jiwer

    samples, rate = sf.read(wav, dtype="float32")
    assert rate == SAMPLE_RATE, wav
    vocab = processor.tokenizer.vocab[lang]
    id_to_token = {i: t for t, i in vocab.items()}
    pieces = chapter_logits(model, processor.feature_extractor, samples, window_s, context_s)
    hyps = verse_hypotheses(decode_timed(pieces, id_to_token, vocab["<pad>"]), truth)
    refs = [normalize_text(v["text"], lang) for v in truth["verses"]]
    measures = jiwer.process_characters(refs, hyps)
    edits = measures.substitutions + measures.deletions + measures.insertions
    return {
        "cer": round(float(measures.cer), 5),
        "char_edits": edits,
        "ref_chars": sum(len(r) for r in refs),
        "wer": round(float(jiwer.wer(refs, hyps)), 5),
        "verses": [{"number": v["number"], "ref": r, "hyp": h, "cer": round(float(jiwer.cer(r, h)), 4)}
                   for v, r, h in zip(truth["verses"], refs, hyps)],  # fmt: skip
    }


def evaluate_demo(model_dir: Path, demo_root: Path, cache: Path, langs: Iterable[str] = tuple(LANGUAGES)) -> dict:
    """CER per demo chapter for two ways of windowing; the workflow's transcribe step does the first."""
    import torch

    torch.manual_seed(0)
    modes = {"window_30s_context_2s": (WINDOW_S, CONTEXT_S), "fixed_30s": (WINDOW_S, 0.0)}
    report: dict = {"model": str(model_dir), "modes": {m: {"window_s": w, "context_s": c} for m, (w, c) in modes.items()},
                    "chapters": []}  # fmt: skip
    for lang in langs:
        model, processor = load_demo_model(model_dir, lang)
        for truth_path in sorted((demo_root / LANGUAGES[lang].name / "truth").glob("*.json")):
            truth = json.loads(truth_path.read_text(encoding="utf-8"))
            wav = chapter_wav(demo_root, lang, truth["recording"], cache)
            entry = {"lang": lang, "language": LANGUAGES[lang].name, "recording": truth["recording"],
                     "audio": f"{LANGUAGES[lang].name}/{truth['audio']}", "duration_s": truth["duration"],
                     "speed_wpm": truth["speed"]}  # fmt: skip
            for mode, (window_s, context_s) in modes.items():
                entry[mode] = score_chapter(model, processor, lang, wav, truth, window_s, context_s)
            report["chapters"].append(entry)
    for mode in modes:
        edits = sum(c[mode]["char_edits"] for c in report["chapters"])
        chars = sum(c[mode]["ref_chars"] for c in report["chapters"])
        report.setdefault("summary", {})[mode] = {
            "cer_all": round(edits / chars, 5),
            "cer_max_chapter": max(c[mode]["cer"] for c in report["chapters"]),
        }
    return report


def print_eval(report: dict) -> None:
    modes = list(report["modes"])
    print(f"{'chapter':24s}" + "".join(f"{m:>26s}" for m in modes))
    for c in report["chapters"]:
        print(f"{c['language'] + '/' + c['recording']:24s}" + "".join(f"{100 * c[m]['cer']:25.2f}%" for m in modes))
    print(f"{'all':24s}" + "".join(f"{100 * report['summary'][m]['cer_all']:25.2f}%" for m in modes))


# %% [markdown]
# ## Packing the shipped folder

# %%

DEFAULT_ADAPTER = "por"  # held in model.safetensors, as MMS ships English there


def data_summary(manifests: dict, demo_root: Path) -> dict:
    """Hours per language, and how much of the demo chapters' vocabulary the training texts contain
    (whole sentences never: see ``overlaps_demo``)."""
    summary = {}
    for lang, splits in manifests.items():
        records = {split: [record for _, record in read_jsonl(path)] for split, path in splits.items()}
        train_words = {w for split in ("easy", "train", "narrative") for r in records.get(split, [])
                       for w in r["text"].split()}  # fmt: skip
        demo_tokens = []
        for path in sorted((demo_root / LANGUAGES[lang].name / "truth").glob("*.json")):
            truth = json.loads(path.read_text(encoding="utf-8"))
            demo_tokens += [w for v in truth["verses"] for w in normalize_text(v["text"], lang).split()]
        stats = {}
        for split, path in splits.items():
            stats_path = path.with_name(f"{split}.stats.json")
            if stats_path.exists():
                stats[split] = json.loads(stats_path.read_text(encoding="utf-8"))
        summary[lang] = {
            "voice": LANGUAGES[lang].voice,
            **{f"{split}_utterances": len(rows) for split, rows in records.items()},
            **{f"{split}_hours": round(sum(r["duration"] for r in rows) / 3600, 3) for split, rows in records.items()},
            "train_word_types": len(train_words),
            "demo_word_types_seen_in_training": round(len(set(demo_tokens) & train_words) / len(set(demo_tokens)), 3),
            "demo_word_tokens_seen_in_training": round(sum(w in train_words for w in demo_tokens) / len(demo_tokens), 3),
            "synthesis": stats,
        }
    return summary


def _stage_info(folder: Path) -> dict:
    info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    stage = {k: info[k] for k in ("lang", "start_model", "start_notes", "settings", "steps", "epoch",
                                  "train_audio_s_seen", "final_eval")}  # fmt: skip
    # training.json holds no wall time (results are byte-reproducible); the log's records do.
    timed = [record for _, record in read_jsonl(folder / "training_log.jsonl") if "elapsed_s" in record]
    stage["elapsed_s"] = timed[-1]["elapsed_s"] if timed else 0.0
    return stage


def check_same_base(folders: Sequence[Path]) -> None:
    """The adapter stages froze the base: every non-adapter tensor must be identical."""
    from safetensors.torch import load_file

    reference = None
    for folder in folders:
        weights = load_file(str(folder / "model.safetensors"))
        base = {k: v for k, v in weights.items() if "adapter_layer" not in k and not k.startswith("lm_head")}
        if reference is None:
            reference = base
        elif base.keys() != reference.keys() or any(not bool((base[k] == reference[k]).all()) for k in base):
            raise RuntimeError(f"{folder}: the base weights differ from the other adapters' base")


def pack(out: Path, work: Path, stages: dict[str, Path], adapters: dict[str, Path], manifests: dict, recipe: Recipe,
         seed: int, demo_root: Path, command: str) -> dict:
    """Assemble the shipped folder beside ``out``, evaluate it there, write the card, rename it in."""
    from tala.finetune.train_ctc import build_processor

    check_same_base(list(adapters.values()))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    default = adapters[DEFAULT_ADAPTER]
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(default / name, tmp / name)
    processor = build_processor(nested_vocab(LANGUAGES), DEFAULT_ADAPTER, work / "models" / "tokenizer")
    processor.save_pretrained(tmp)
    for lang, folder in adapters.items():
        shutil.copyfile(folder / f"adapter.{lang}.safetensors", tmp / f"adapter.{lang}.safetensors")
    log_lines = []
    trained = {**stages, **{f"adapter-{lang}": f for lang, f in adapters.items()}}
    for stage, folder in trained.items():
        for _, record in read_jsonl(folder / "training_log.jsonl"):
            log_lines.append(json.dumps({"stage": stage, **record}, ensure_ascii=False))
    write_text_atomic(tmp / "training_log.jsonl", "\n".join(log_lines) + "\n")

    stages = {name: _stage_info(folder) for name, folder in trained.items()}
    info = {
        "generator": "tala.demo.model",
        "tala_version": tala.__version__,
        "command": command,
        "seed": seed,
        "recipe": asdict(recipe),
        "default_adapter": DEFAULT_ADAPTER,
        "adapters": sorted(adapters),
        "parameters": _parameter_count(tmp),
        "files_bytes": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.suffix == ".safetensors"},
        "data": data_summary(manifests, demo_root),
        "stages": stages,
        "training_s": round(sum(s["elapsed_s"] for s in stages.values()), 1),
        "versions": _versions(),
    }
    write_json_atomic(tmp / "training.json", info)
    report = evaluate_demo(tmp, demo_root, work / "eval")
    report["model"] = str(out)
    write_json_atomic(tmp / "eval.json", report)
    write_text_atomic(tmp / "README.md", model_card(info, report))
    replace_dir(tmp, out)
    return report


def _versions() -> dict:
    import subprocess

    import torch
    import transformers

    done = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    found = re.search(r"text-to-speech:\s*(\S+)", done.stdout)
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "espeak-ng": found.group(1) if found else "unknown"}  # fmt: skip


def _parameter_count(folder: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        return sum(int(np.prod(weights.get_slice(k).get_shape())) for k in weights.keys())


def model_card(info: dict, report: dict) -> str:
    """The README of the shipped folder, from the run's own numbers."""
    modes = list(report["modes"])
    rows = "\n".join(
        f"| {c['language']} | {c['recording']} | {c['speed_wpm']} | {c['duration_s']:.1f} | "
        + " | ".join(f"{100 * c[m]['cer']:.2f} %" for m in modes) + " |"
        for c in report["chapters"]
    )
    total = " | ".join(f"**{100 * report['summary'][m]['cer_all']:.2f} %**" for m in modes)
    data_rows = "\n".join(
        f"| {lang} ({LANGUAGES[lang].name}) | `{d['voice']}` | {d['easy_utterances']} / {d['easy_hours']:.2f} | "
        f"{d['train_utterances']} / {d['train_hours']:.2f} | "
        + (f"{d['narrative_utterances']} / {d['narrative_hours']:.2f}" if "narrative_utterances" in d else "-")
        + f" | {d['valid_utterances']} / {d['valid_hours']:.2f} | "
        f"{d['train_word_types']} | {100 * d['demo_word_types_seen_in_training']:.0f} % / "
        f"{100 * d['demo_word_tokens_seen_in_training']:.0f} % |"
        for lang, d in info["data"].items()
    )
    def valid_cer(stage: dict) -> str:
        return "" if stage["final_eval"] is None else f"{100 * stage['final_eval']['cer']:.2f} %"

    stage_rows = "\n".join(
        f"| {name} | {s['settings']['phase']} | {s['lang']} | {s['steps']} | {s['settings']['learning_rate']:g} | "
        f"{s['train_audio_s_seen'] / 3600:.1f} | {s['elapsed_s'] / 60:.1f} | {valid_cer(s)} |"
        for name, s in info["stages"].items()
    )
    r = info["recipe"]
    adapter_steps = ", ".join(f"{steps} steps for {lang}" for lang, steps in r["adapter_steps"])
    return f"""# tala demo model: a tiny MMS-style CTC model for Samoan and Portuguese

A {info['parameters'] / 1e6:.2f} M parameter wav2vec2 CTC model with MMS's layout (stable layer norm,
attention adapters in every layer, one adapter and output layer per language, a nested `vocab.json`), trained
from scratch on espeak-ng speech **that never reads a sentence of the demo chapters**. It lets every stage of the
demo workflow (transcription, forced alignment, dataset cuts, ASR evaluation) run offline and be scored against
the demo's exact ground truth. It knows two espeak-ng voices and nothing else: it is a test instrument, not an
ASR model for real recordings.

## Use

```python
from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

model = Wav2Vec2ForCTC.from_pretrained("resources/demo/model")   # base + the default adapter ({info['default_adapter']})
model.load_adapter("smo")                                         # or "por": adapter.<lang>.safetensors
processor = Wav2Vec2Processor.from_pretrained("resources/demo/model")
processor.tokenizer.set_target_lang("smo")
```

Also `Wav2Vec2ForCTC.from_pretrained(path, target_lang="smo", ignore_mismatched_sizes=True)`. Input: 16 kHz mono;
output: one frame per 20 ms over the language's characters (`<pad>` = CTC blank, id 0; `|` = word break).

## Files

| file | holds |
|---|---|
| `config.json`, `model.safetensors` | the base model with the default adapter ({info['default_adapter']}) and its output layer |
| `adapter.por.safetensors`, `adapter.smo.safetensors` | per language: the attention adapters of the 4 layers and `lm_head` (the keys `load_adapter` reads) |
| `vocab.json`, `tokenizer_config.json`, `processor_config.json` | `Wav2Vec2Processor`: nested per-language character vocabulary, 16 kHz feature extractor |
| `training.json` | recipe, seed, data, per-stage settings and times, versions |
| `training_log.jsonl` | the recorded run: loss, learning rate, throughput, validation CER, per stage |
| `eval.json` | greedy CER on every demo chapter, per verse |

## Architecture

wav2vec2 (`Wav2Vec2ForCTC`, transformers {info['versions']['transformers']}): CNN feature encoder of 7 layers x 64 channels
(kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 20 ms frames), layer norm in each conv layer, a 4-layer pre-LN
transformer (hidden 192, 4 heads, feed-forward 768, convolutional positional embedding of width 64 in 16 groups),
attention adapters of width {r['adapter_dim']} after every layer (`adapter_attn_dim`), no masking, no dropout.
Vocabularies: Samoan {len(language_vocab(SAMOAN_ALPHABET))} tokens, Portuguese {len(language_vocab(PORTUGUESE_ALPHABET))} tokens (4 specials, `|`, the letters).

## Data

Synthesized by `tala.demo.model` with espeak-ng {info['versions']['espeak-ng']}, the same voices as the demo (`haw` reads Samoan,
`pt` Portuguese), through the demo generator's own helpers (`synthesize`, `trim_silence`, `taper_edges`):

- *easy* (the curriculum): one short sentence of 2-6 listed words, little silence, 140-185 wpm, no codec;
- *train*: random sentences of common words (typed for this model, the commonest drawn with Zipf weights) and pseudo-words built from each language's syllables
  and spelling (Samoan (C)V syllables with macrons, okina and reduplication; Portuguese onsets, nuclei, codas,
  accents and endings); a sentence sharing 4 consecutive words with any demo verse or heading is rejected;
- 1-7 sentences per utterance, each synthesized, trimmed and tapered alone, joined by 0.2-1.5 s pauses, with
  0.1-1.5 s of leading and trailing silence, up to ~25 s; speed {SPEED_WPM[0]}-{SPEED_WPM[1]} wpm (the demo: 130-177), pitch {PITCH[0]}-{PITCH[1]};
- peak {PEAK_DBFS[0]:g} to {PEAK_DBFS[1]:g} dBFS, a white noise floor at {NOISE_RMS_DBFS[0]:g} to {NOISE_RMS_DBFS[1]:g} dBFS RMS (the demo: -3 and -65); 45 % of the
  utterances stored as the demo stores chapters (MP3 64/96 kbit/s, AAC 48 kbit/s in MP4) and decoded with `tala.audio.convert`;
- targets: lower case, punctuation removed, okina variants unified to U+02BB, diacritics kept.

| language | voice | easy: utterances / hours | train | narrative | valid | word types | demo word types / tokens also in training |
|---|---|---:|---:|---:|---:|---:|---:|
{data_rows}

## Recipe

Every stage is one `tala.finetune.train_ctc` run (AdamW, linear warm-up, cosine decay, gradient clipping at 1.0, batches
of at most {r['batch_seconds']:g} s of padded audio, data order seeded per epoch):

1. **easy** (curriculum): from random weights, all parameters, both languages on the joint vocabulary `mul` (the
   union of both alphabets), on the short sentences of listed words; peak lr {r['easy_lr']:g} after {r['easy_warmup']} warm-up steps.
   From scratch on the full data the model stayed on CTC's all-blank plateau (loss ~2.9 per character) for
   1,200 steps; on these sentences it leaves it after ~300.
2. **base**: all parameters, both languages, the full data (long utterances, pauses, pseudo-words, codecs); peak lr
   {r['base_lr']:g} after {r['base_warmup']} warm-up steps, on from the easy stage. Samoan was then at 1-3 % CER on the demo,
   Portuguese at 5-13 %: it wrote the conjunction "e" (read [i]) as "i" or glued it to the next word, and
   misspelled the commonest words of scripture ("luz", "águas", "haja").
3. **scripture**: all parameters again, peak lr {r['scripture_lr']:g}, on the full data plus Portuguese *narrative*
   prose: clauses chained with "e" ("E disse ..., e ..."), the commonest words at their frequency in Bible prose,
   and a list of scripture's common content words (typed for this model; no demo sentence, as everywhere).
   Then a second pass (**scripture-2**) over the same data in another order, peak lr {r['scripture2_lr']:g}: the first
   pass sees each utterance about once, and its valid CER was still falling when its learning rate ran out.
4. **adapters**: per language, `--phase adapter` on the frozen base: the attention adapters and a language-sized
   `lm_head` whose rows start from the joint head's rows of the same letters; peak lr {r['adapter_lr']:g},
   {adapter_steps}; Portuguese on its train and narrative data.
5. **pack**: `model.safetensors` = base + the {info['default_adapter']} adapter; both adapters as `adapter.<lang>.safetensors`
   (the packer checks that both adapter runs left the base bit for bit unchanged).

| stage | phase | vocabulary | steps | peak lr | audio seen (h) | CPU minutes | valid CER |
|---|---|---|---:|---:|---:|---:|---:|
{stage_rows}

Training took {info['training_s'] / 60:.1f} min in all on 2 CPU cores (shared with other work), float32, seed {info['seed']}.

## Results: greedy CER on the demo chapters

Each chapter converted with `tala.audio.convert` (16 kHz mono), run through the model in 30 s windows, greedy CTC
decoding; characters assigned to verses by time (cuts in the middle of each pause, the spoken heading left out);
CER = character edits over all verses / reference characters (texts normalized as above).
"30 s + 2 s context": each 30 s window is run with 2 s of audio on each side and only its own frames kept (the
transcribe step's way); "fixed 30 s": consecutive 30 s windows without context.

| language | recording | wpm | seconds | 30 s + 2 s context | fixed 30 s |
|---|---|---:|---:|---:|---:|
{rows}
| all | | | | {total} |

## Reproduce

```
{info['command']}
```

Needs espeak-ng and ffmpeg. The texts, audio and training order are seeded; float32 CPU arithmetic of another
machine or thread count can differ in the last bits, so a rerun gives a model of the same quality rather than the
same bytes. Scratch data (~2 GB of clips, checkpoints) goes to `.cache/demo_model/`; a killed run resumes.
"""


# %% [markdown]
# ## Command line

# %%


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tala.demo.model",
        description="Synthesize training speech, train the demo's tiny MMS-style CTC model (base, then one adapter "
        "per language), evaluate it on the demo chapters and write the shipped model folder.",
    )
    parser.add_argument("--out", type=Path, default=Path("resources/demo/model"), help="default: %(default)s")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch: data, stages, checkpoints (default: %(default)s)")
    parser.add_argument("--demo", type=Path, default=DEMO_ROOT, help="the demo corpus (default: resources/demo)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --out on the demo chapters")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.eval_only:
        report = evaluate_demo(args.out, args.demo, args.work / "eval")
        print_eval(report)
        return 0
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            raise InputError(tool, "not found on PATH: the demo model is trained on espeak-ng speech, stored as MP3/MP4 "
                                   "with ffmpeg (Debian/Ubuntu: apt-get install espeak-ng ffmpeg)")
    recipe = Recipe()
    command = "PYTHONPATH=scripts python -m tala.demo.model --out " + str(args.out)
    if args.seed != DEFAULT_SEED:
        command += f" --seed {args.seed}"
    manifests = stage_data(args.work, recipe, args.seed, args.workers)
    easy = stage_easy(args.work, manifests, recipe, args.seed)
    base = stage_base(args.work, easy, manifests, recipe, args.seed)
    scripture = stage_scripture(args.work, base, manifests, recipe, args.seed)
    scripture2 = stage_scripture(args.work, scripture, manifests, recipe, args.seed, second=True)
    adapters = {lang: stage_adapter(args.work, scripture2, manifests, lang, recipe, args.seed) for lang in LANGUAGES}
    stages = {"easy": easy, "base": base, "scripture": scripture, "scripture-2": scripture2}
    report = pack(args.out, args.work, stages, adapters, manifests, recipe, args.seed, args.demo, command)
    print_eval(report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
