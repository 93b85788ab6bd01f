"""BratsUNet: brain tumour segmentation of FLAIR, T1, T1ce and T2 MRI with a 3D U-Net, and training it.

The four classes Slicer expects. They stay thin: the work is done by ``BratsUNetSlicer`` (scene I/O, worker
process, results, case discovery) and by the ``BratsUNetLib`` library that runs in the worker. Nothing here
imports torch or MONAI when the module loads, so the panel opens before they are installed.
"""

from __future__ import annotations

import contextlib
import tempfile

import BratsUNetSlicer  # noqa: F401  (puts the bundled library on sys.path)
import slicer
import vtk
from BratsUNetSlicer import cases, dependencies, refinement, sample_data, scene_io, segment, testing, training
from BratsUNetSlicer.messages import user_errors
from BratsUNetSlicer.models import ModelRegistry
from BratsUNetSlicer.panel_binding import ParameterBinding
from BratsUNetSlicer.panel_dependencies import DependenciesSection
from BratsUNetSlicer.panel_inputs import InputsSection
from BratsUNetSlicer.panel_model import ModelSection
from BratsUNetSlicer.panel_refine import RefineSection
from BratsUNetSlicer.panel_results import ResultsSection
from BratsUNetSlicer.panel_training import TrainingSection
from BratsUNetSlicer.parameters import BratsUNetParameterNode, wrap
from BratsUNetSlicer.transaction import SceneTransaction
from BratsUNetSlicer.worker import Job, close_shared_workers, shared_worker
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from BratsUNetLib.errors import BratsUNetError, Cancelled

# On the parameter node: which inputs guessInputs filled (modality=node ID;...), so that only those follow a new case.
FILLED_INPUTS_ATTRIBUTE = "BratsUNet.FilledInputs"


class BratsUNet(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BratsUNet")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["BratsUNet developers"]
        self.parent.helpText = _(
            "Segments brain tumours in multi-modal MRI (FLAIR, T1, T1ce, T2) with a 3D U-Net into necrotic tumor "
            "core, peritumoral edema and enhancing tumor, with the volume of each sub-region in mL; trains or "
            "fine-tunes the network on cases loaded in the scene. Reads 3DUnetCNN configs and checkpoints.<br>"
            "Console: <code>import BratsUNet; BratsUNet.BratsUNetLogic().segment(flair, t1, t1ce, t2, "
            "model='model.pth', wait=True)</code> returns the segmentation node.")
        self.parent.acknowledgementText = _(
            "Re-implements the 3DUnetCNN training system (David G. Ellis) on MONAI and PyTorch.")
        # The sample case joins Sample Data once every module is loaded (Sample Data among them).
        if getattr(slicer, "app", None) is not None:
            slicer.app.connect("startupCompleted()", sample_data.register)
            # The workers are the session's, not the panel's: a console job goes on when the panel is rebuilt.
            slicer.app.connect("aboutToQuit()", close_shared_workers)


class BratsUNetWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: every value lives in the parameter node; the logic does the work in a worker process.

    Each section of the panel is one object of ``BratsUNetSlicer.panel_*`` (model, case inputs, refinement,
    training, results, dependencies); this class builds them and follows the scene and the parameter node.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: BratsUNetLogic | None = None
        self._parameterNode = None
        self._parameters: BratsUNetParameterNode | None = None  # the typed view of _parameterNode
        self.binding: ParameterBinding | None = None
        self.models: ModelSection | None = None
        self.inputs: InputsSection | None = None
        self.training: TrainingSection | None = None
        self.results: ResultsSection | None = None
        self.refine: RefineSection | None = None
        self.dependencies: DependenciesSection | None = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BratsUNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BratsUNetLogic()
        self.models = ModelSection(self)
        self.inputs = InputsSection(self)
        self.training = TrainingSection(self)
        self.results = ResultsSection(self)
        self.refine = RefineSection(self)
        self.dependencies = DependenciesSection(self)
        self.binding = ParameterBinding(self.ui, self.updateParameterNodeFromGUI)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.inputs.onNodeAdded)
        selection = slicer.mrmlScene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        if selection is not None:  # the volume shown changed: the inputs follow its case
            self.addObserver(selection, vtk.vtkCommand.ModifiedEvent, self.inputs.onShownVolumeChanged)
        self.models.restore()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self.refine is not None:
            self.refine.stop()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.dependencies.check()

    def exit(self) -> None:
        self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- the parameter node -------------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        self.logic.guessInputs(self.parameters)

    def setParameterNode(self, node) -> None:
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        self._parameters = wrap(node) if node is not None else None
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    @property
    def hasParameterNode(self) -> bool:
        return self._parameterNode is not None

    @property
    def parameters(self) -> BratsUNetParameterNode:
        return self._parameters

    @property
    def updatingGUI(self) -> bool:
        """True while the widgets are being set from the parameter node (their signals must not write back)."""
        return self.binding.updating

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self.binding.updating:
            return
        self.binding.updating = True
        try:
            parameters = self.parameters
            self.binding.toWidgets(parameters)
            self.models.showParameters(parameters)
            # The last result's volumes, in the panel; no empty table before the first result.
            self.ui.volumesTableView.setMRMLTableNode(parameters.volumesTable)
            self.ui.volumesTableView.visible = parameters.volumesTable is not None
            self.refine.follow(parameters)  # the point lists chosen now are the ones whose points refine
            self.updateButtons()
        finally:
            self.binding.updating = False

    def updateParameterNodeFromGUI(self, *args) -> None:
        if self._parameterNode is None or self.binding.updating:
            return
        wasModified = self._parameterNode.StartModify()
        self.binding.fromWidgets(self.parameters)
        self._parameterNode.EndModify(wasModified)

    def updateButtons(self) -> None:
        """Each section's buttons follow the parameter node and the running job."""
        parameters, running = self.parameters, self.results.runningKinds
        self.inputs.updateButtons(parameters, running)
        self.training.updateButtons(parameters, running)
        self.refine.updateButtons(parameters, running)


class BratsUNetLogic(ScriptedLoadableModuleLogic):
    """Segmentation and training, usable from the Python console without the panel.

    Work runs in a worker process (``python -m BratsUNetLib worker``); ``wait=False`` returns a
    :class:`~BratsUNetSlicer.worker.Job` at once: ``job.onProgress(callback)`` and ``job.onFinished(callback)`` run
    in Slicer's event loop, ``job.cancel()`` stops it, and a script without the event loop calls ``job.wait()``.
    ``wait=True`` blocks and returns the result (and raises the worker's one-line message as a
    :class:`BratsUNetError` on failure, :class:`Cancelled` on cancel).
    """

    def __init__(self, workerCommand: list[str] | None = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        # Segmentations and trainings run in workers of their own, shared by every logic of this Slicer process:
        # Apply works while a model trains, and cancelling one leaves the other running.
        self.worker = shared_worker("segment", workerCommand)
        self.trainingWorker = shared_worker("train", workerCommand)
        self.models = ModelRegistry()
        self._transaction: SceneTransaction | None = None  # set while a fine-tuning round starts its training

    def getParameters(self) -> BratsUNetParameterNode:
        """The typed view of the scene's parameter node (created when the scene has none)."""
        return wrap(self.getParameterNode())

    def guessInputs(self, parameters: BratsUNetParameterNode) -> None:
        """Point the inputs at the volumes of the case the user is looking at (:func:`scene_io.guess_inputs`).

        Fills empty inputs and replaces the ones filled here before (so they follow a newly loaded case); an input
        the user chose stays as it is.
        """
        node = parameters.parameterNode
        filled = dict(item.split("=", 1) for item in (node.GetAttribute(FILLED_INPUTS_ATTRIBUTE) or "").split(";")
                      if "=" in item)
        for modality, volume in scene_io.guess_inputs(slicer.mrmlScene).items():
            current = getattr(parameters, modality)
            if current is None or (current is not volume and filled.get(modality) == current.GetID()):
                setattr(parameters, modality, volume)
                filled[modality] = volume.GetID()
        node.SetAttribute(FILLED_INPUTS_ATTRIBUTE, ";".join(f"{m}={i}" for m, i in filled.items()))

    # -- segmentation -------------------------------------------------------------------------------------------

    @user_errors
    def segment(self, flair=None, t1=None, t1ce=None, t2=None, model: str = "", *, config: str = "",
                outputSegmentation=None, volumesTable=None, device: str = "auto", precision: str = "",
                nativeResolution: bool = False, testTimeAugmentation: bool = False, labelScheme: str = "brats2020",
                probabilityMaps: bool = False, show3D: bool = True, wait: bool = False, onEvent=None):
        """Segment the tumour in the four volumes with the checkpoint ``model``.

        ``config`` is needed only for an original 3DUnetCNN checkpoint. ``outputSegmentation`` /
        ``volumesTable`` are refilled when given, else created. ``device`` is auto, cpu, gpu, cuda or mps.
        ``precision`` is ``bratsunet segment --precision``: "" (fp32; mixed precision on a GPU), "bf16" (CPUs with
        bf16 units, or a GPU) or "int8" (CPU; the model is quantized once, then kept compiled by the worker).
        ``nativeResolution`` runs the network without resizing (``bratsunet segment --native``: in one pass
        when it fits in the free memory, else in sliding windows).
        ``labelScheme`` "brats2021" labels enhancing tumour 3 instead of 4 (segment "Enhancing tumor (label 3)").
        ``probabilityMaps`` adds one scalar volume per region (probabilities 0 to 1); ``show3D`` shows the result
        as closed surfaces in the 3D view. With ``wait=True`` returns the
        segmentation node, else the running job (its ``result["segmentation"]`` is set when it succeeds).
        """
        if not model:
            raise BratsUNetError(_("No model chosen; give the path of a checkpoint (.pth)."))
        inputs = {"flair": flair, "t1": t1, "t1ce": t1ce, "t2": t2}
        scene_io.check_node_roles(inputs, outputSegmentation=outputSegmentation, volumesTable=volumesTable)
        self._requireIdle(self.worker)
        self._requireDependencies()
        description = self.models.describe(model, config)
        self.models.add(model, config)
        options = segment.SegmentationOptions(
            device=dependencies.device_argument(device), precision=precision or None,
            native_resolution=nativeResolution,
            tta=testTimeAugmentation, scheme=labelScheme, probability_maps=probabilityMaps, show_3d=show3D)
        job = segment.start(self.worker, inputs, model, config, list(description["channels"]),
                            list(description["regions"]), options, outputSegmentation, volumesTable, onEvent,
                            transaction=self._transaction)
        return self.waitFor(job)["segmentation"] if wait else job

    @user_errors
    def segmentWithParameters(self, parameters: BratsUNetParameterNode, wait: bool = False, onEvent=None):
        """:meth:`segment` with the inputs and options of the parameter node (what Apply does)."""
        return self.segment(
            **parameters.inputs, model=parameters.modelPath, config=parameters.modelConfigPath,
            outputSegmentation=parameters.outputSegmentation, volumesTable=parameters.volumesTable,
            device=parameters.device, precision=parameters.precision, nativeResolution=parameters.nativeResolution,
            testTimeAugmentation=parameters.testTimeAugmentation, labelScheme=parameters.labelScheme,
            probabilityMaps=parameters.probabilityMaps, show3D=parameters.show3D, wait=wait, onEvent=onEvent)

    @user_errors
    def refine(self, segmentationNode, addPoints=None, removePoints=None, model: str = "", *, region: str = "WT",
               device: str = "auto", wait: bool = False, onEvent=None):
        """Correct a BratsUNet result with clicks: ``addPoints`` are in ``region`` (WT, TC or ET), ``removePoints``
        are not (Markups point lists, or (R, A, S) triples in mm; a Markups point whose description is WT, TC or
        ET is about that region instead, as the panel marks each point it places). A guided ``model`` (trained with a "guidance"
        block in its config; default: the model that made the segmentation) recomputes a box around the points,
        and ``segmentationNode`` is refilled in place; the rest of it keeps its labels. With ``wait=True``
        returns the node, else the running job."""
        self._requireIdle(self.worker)
        self._requireDependencies()
        model = model or (segmentationNode.GetAttribute(segment.MODEL_ATTRIBUTE) if segmentationNode else "") or ""
        if not model:
            raise BratsUNetError(_("No model chosen; give the path of a guided model (.pth)."))
        job = refinement.start(self.worker, segmentationNode, model, refinement.points_of(addPoints, region),
                               refinement.points_of(removePoints, region), dependencies.device_argument(device),
                               onEvent)
        return self.waitFor(job)["segmentation"] if wait else job

    @user_errors
    def refineWithParameters(self, parameters: BratsUNetParameterNode, wait: bool = False, onEvent=None):
        """:meth:`refine` of the output segmentation with the panel's point lists, region and selected model
        (what Refine does, and each placed point when "Refine as points are placed" is ticked)."""
        return self.refine(parameters.outputSegmentation, parameters.refineAdd, parameters.refineRemove,
                           model=parameters.modelPath, region=parameters.refineRegion, device=parameters.device,
                           wait=wait, onEvent=onEvent)

    # -- training -----------------------------------------------------------------------------------------------

    @user_errors
    def train(self, folder: str, settings: training.TrainingOptions | None = None, *, resume: bool = False,
              pretrainedModel: str = "", pretrainedConfig: str = "", table=None, wait: bool = False,
              onEvent=None):
        """Train on the cases found in the scene; checkpoints and the log go to ``folder``.

        ``resume`` continues the run in ``folder`` from its last checkpoint up to ``settings.epochs`` (the cases
        need not be in the scene any more); ``pretrainedModel`` fine-tunes an existing model (an original
        3DUnetCNN checkpoint with its ``pretrainedConfig``) with its own network, preprocessing and labels, into
        a new model in ``folder``. One row per epoch goes to ``table`` (created when None). With ``wait=True`` returns
        the path of the new model (registered, ready to segment), else the running job (its ``result`` holds
        ``table`` and ``chart`` at once, ``model`` when it ends).
        """
        scene_io.check_node_roles({}, trainingTable=table)
        self._requireIdle(self.trainingWorker)
        self._requireDependencies()
        found = [] if resume else cases.discover_cases(slicer.mrmlScene)
        job = training.start(self.trainingWorker, found, folder, settings or training.TrainingOptions(), resume=resume,
                             pretrained=pretrainedModel, pretrained_config=pretrainedConfig, table=table, on_event=onEvent, registry=self.models,
                             transaction=self._transaction)
        return self.waitFor(job)["model"] if wait else job

    @user_errors
    def trainWithParameters(self, parameters: BratsUNetParameterNode, resume: bool = False, wait: bool = False,
                            onEvent=None):
        """:meth:`train` with the settings of the parameter node (what Train and Resume do).

        With ``fineTune`` the selected model is fine-tuned, each run in a new folder inside the output folder
        (:func:`training.fine_tuning_run`; Resume continues the newest), on every usable case of the scene: the
        corrected results added with :meth:`addCorrectedCaseWithParameters` among them."""
        folder, settings = parameters.trainingFolder, training.options_of(parameters)
        if parameters.fineTune:
            folder, settings = training.fine_tuning_run(folder, settings, resume=resume)
        return self.train(folder, settings, resume=resume,
                          pretrainedModel=parameters.modelPath if parameters.fineTune else "",
                          pretrainedConfig=parameters.modelConfigPath if parameters.fineTune else "",
                          table=parameters.trainingTable, wait=wait, onEvent=onEvent)

    @user_errors
    def addCorrectedCase(self, segmentationNode) -> cases.TrainingCase:
        """Make a BratsUNet result the user corrected (e.g. in the Segment Editor) a training case: the reference
        label of the case of the volumes it was made from. Returns the case; raises :class:`BratsUNetError` when
        it cannot be used (the result then stays a prediction)."""
        return cases.add_corrected_case(segmentationNode)

    @user_errors
    def fineTuneOnCorrectedCase(self, segmentationNode, folder: str,
                                settings: training.TrainingOptions | None = None, *, table=None, wait: bool = False,
                                onEvent=None):
        """Add a corrected result as a training case (:meth:`addCorrectedCase`) and fine-tune the model that made
        it on the usable cases of the scene, the corrected one among them.

        Each round goes to a new folder ``<folder>/<case>_fine_tune`` (``_2``, ``_3``... later), so correcting
        and fine-tuning again needs no other step. With a single usable case nothing is held out for validation.
        Returns like :meth:`train`.
        """
        model, config = training.check_fine_tuning(segmentationNode, folder)
        scene_io.check_node_roles({}, trainingTable=table)
        self._requireIdle(self.trainingWorker)
        # One transaction for the whole round: a failed or cancelled run also takes back "added as a case".
        transaction = self._transaction or SceneTransaction(slicer.mrmlScene)
        with transaction.recording(), self._within(transaction):
            folder, settings = training.fine_tuning_round(segmentationNode, folder, settings, transaction)
            return self.train(str(folder), settings, pretrainedModel=model, pretrainedConfig=config, table=table,
                              wait=wait, onEvent=onEvent)

    @user_errors
    def addCorrectedCaseWithParameters(self, parameters: BratsUNetParameterNode) -> cases.TrainingCase:
        """:meth:`addCorrectedCase` on the output segmentation, then the panel set for the one fine-tuning path
        (what "Add the corrected segmentation to the cases" does): the model that made the segmentation is selected
        and "Fine-tune" ticked, so that Train fine-tunes it; the output selectors are emptied, so that segmenting
        again makes a new result instead of refilling the correction. Returns the case."""
        segmentation = parameters.outputSegmentation
        model, config = training.corrected_model(segmentation)
        case = cases.add_corrected_case(segmentation)  # refuses a segmentation BratsUNet did not make
        wasModifying = parameters.parameterNode.StartModify()
        if model:
            self.models.add(model, config)
            parameters.modelPath, parameters.modelConfigPath = model, config
        parameters.fineTune = True
        parameters.outputSegmentation = None
        parameters.volumesTable = None
        parameters.parameterNode.EndModify(wasModifying)
        return case

    # -- shared -------------------------------------------------------------------------------------------------

    def adoptResult(self, parameters: BratsUNetParameterNode, job: Job) -> None:
        """Point the parameter node at what a finished job made (output nodes, the new model)."""
        if job.result.get("segmentation") is not None:
            parameters.outputSegmentation = job.result["segmentation"]
            parameters.volumesTable = job.result.get("table")
        if job.result.get("model"):
            parameters.modelPath = job.result["model"]
            parameters.trainingTable = job.result["table"]

    @user_errors
    def waitFor(self, job: Job) -> dict:
        """Block until ``job`` ends; its result, or the failure as an exception."""
        job.wait()
        if job.state == "cancelled":
            raise Cancelled(job.error or _("The job was cancelled."))
        if job.state != "succeeded":
            raise BratsUNetError(job.error or _("The job failed."))
        return job.result

    def _requireDependencies(self) -> None:
        if not dependencies.install(slicer.util.confirmOkCancelDisplay):  # raises BratsUNetError when it fails
            raise BratsUNetError(_("BratsUNet needs PyTorch and MONAI; install them from the module panel."))

    def _requireIdle(self, worker) -> None:
        """One segmentation and one training at a time: refuse before anything is checked, exported or added."""
        if worker.busy:
            what = _("a training") if worker is self.trainingWorker else _("a segmentation")
            raise BratsUNetError(_("BratsUNet is already running a job ({what}); wait for it to finish or cancel "
                                   "it.").format(what=what))

    @contextlib.contextmanager
    def _within(self, transaction: SceneTransaction):
        """Make the jobs started in the block part of ``transaction`` (fine-tuning is one transaction)."""
        outer, self._transaction = self._transaction, transaction
        try:
            yield transaction
        finally:
            self._transaction = outer


class BratsUNetTest(ScriptedLoadableModuleTest):
    """Self-test: the sample case, segmented by a small random-weight model, gives the three segments with their
    colours on the FLAIR's grid, and volumes that add up."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        # A fresh Slicer has none of the library's packages: the self-test installs them as Apply would (torch
        # through the PyTorch extension), without asking, since running the test is the request.
        self.delayDisplay("Installing what BratsUNet needs (only the first time)")
        dependencies.install(lambda message: True)
        self.test_segment_sample_case()

    def test_segment_sample_case(self) -> None:
        self.delayDisplay("Loading the sample case and making a small model")
        nodes, model = testing.sample_case_and_model(tempfile.mkdtemp(prefix="BratsUNetTest-"))
        volumes = {modality: nodes[modality] for modality in scene_io.MODALITIES}
        self.assertEqual(scene_io.guess_inputs(slicer.mrmlScene), volumes)  # named as BraTS files: all four found
        self.delayDisplay("Segmenting")
        logic = BratsUNetLogic()
        try:
            node = logic.segment(**volumes, model=str(model), device="cpu", wait=True)
        finally:
            logic.worker.close()
        self.assertEqual(testing.sample_result_problems(node, volumes["flair"]), [])
        self.delayDisplay("Test passed")
