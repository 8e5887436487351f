"""The demo model's training sentences: common words typed for it, pseudo-words built from each
language's syllables and spelling, and scripture-style narrative prose; never a demo sentence (a
sentence sharing four consecutive words with a demo verse or heading is rejected)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tala.demo.text import OKINA, demo_truths, normalize_text

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


def listed_words_sentence(lang: str, rng: np.random.Generator) -> str:
    """A short sentence of 2-6 listed words (no pseudo-words), the curriculum's: function words
    (with Zipf weights) and content words."""
    function_words, content_words = WORD_LISTS[lang]
    words = [function_words[int(rng.choice(len(function_words), p=_zipf(len(function_words))))]
             if rng.random() < 0.45
             else content_words[int(rng.integers(len(content_words)))]
             for _ in range(int(rng.integers(2, 7)))]  # fmt: skip
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + "."


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
    for truth in demo_truths(demo_root, lang):
        for text in [truth["heading"]["text"], *(v["text"] for v in truth["verses"])]:
            words = normalize_text(text, lang).split()
            grams.update(tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))
    return grams


def overlaps_demo(sentence: str, lang: str, banned: set[tuple[str, ...]], n: int = 4) -> bool:
    words = normalize_text(sentence, lang).split()
    return any(tuple(words[i : i + n]) in banned for i in range(max(1, len(words) - n + 1)))


